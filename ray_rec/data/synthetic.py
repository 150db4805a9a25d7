"""The embedded default data set: a seeded synthetic shop whose text and histories carry signal.

Items are composed from vocabularies: a category and subcategory, a product type (noun), a brand
owned by the category, an adjective, a size/pack spec and a model number, e.g.
``"Voltaro Heavy-Duty Cordless Drill 20V (VL-4821)"``, with a description made from the
subcategory's phrases. Items of one subcategory share words, so text embeddings group them and
semantic IDs built on them are meaningful.

Users prefer one or two categories and a few brands. Each next item is, in order of chance:
a *complement* of the last item (the next product type of its subcategory: drill -> drill bits),
a *repeat* of a consumable already bought, or a fresh pick from a preferred category, often of a
preferred brand, by Zipf popularity. Timestamps grow along each sequence, from a random start per
user, so the global 8:1:1 split by time is meaningful.

``generate_synthetic(SyntheticConfig(), max_history=10, split="ratio") -> Loaded``;
``ray-rec data prepare`` (source=synthetic is the default) writes it to a run folder.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ray_rec.data.config import SyntheticConfig
from ray_rec.data.loaders import Loaded
from ray_rec.data.samples import build_splits, interactions_table

# category -> subcategory -> product types (in complement order: each is followed by its complement);
# a trailing "*" marks a consumable that users buy again.
CATALOG = {
    "Power Tools": {
        "Drills": ["Cordless Drill", "Drill Bit Set*", "Impact Driver", "Driver Bit Set*"],
        "Saws": ["Circular Saw", "Saw Blade*", "Jigsaw", "Jigsaw Blades*"],
        "Sanders": ["Orbital Sander", "Sanding Discs*", "Belt Sander", "Sanding Belts*"],
    },
    "Lab Supplies": {
        "Glassware": ["Beaker Set", "Graduated Cylinder", "Erlenmeyer Flask", "Test Tubes*"],
        "Measurement": ["Digital Scale", "Calibration Weights", "pH Meter", "Buffer Solution*"],
        "Safety": ["Safety Goggles", "Nitrile Gloves*", "Lab Coat", "Face Shields*"],
    },
    "Adhesives": {
        "Glues": ["Super Glue*", "Glue Gun", "Hot Glue Sticks*", "Wood Glue*"],
        "Tapes": ["Duct Tape*", "Tape Dispenser", "Masking Tape*", "Packing Tape*"],
        "Sealants": ["Silicone Sealant*", "Caulking Gun", "Epoxy Putty*", "Thread Sealant Tape*"],
    },
    "Electrical": {
        "Wiring": ["Wire Stripper", "Electrical Wire Spool*", "Crimping Tool", "Wire Connectors*"],
        "Testing": ["Digital Multimeter", "Test Leads", "Voltage Tester", "9V Batteries*"],
        "Lighting": ["LED Work Light", "LED Bulbs*", "Headlamp", "AAA Batteries*"],
    },
    "3D Printing": {
        "Printers": ["3D Printer", "PLA Filament*", "Build Plate", "Nozzle Kit*"],
        "Filaments": ["PETG Filament*", "Filament Dryer", "TPU Filament*", "Filament Storage Box"],
        "Finishing": ["Deburring Tool", "Sanding Sponges*", "Spray Primer*", "Hobby Knife Blades*"],
    },
    "Fasteners": {
        "Screws": ["Wood Screws*", "Screw Organizer", "Drywall Screws*", "Screw Extractor Set"],
        "Anchors": ["Wall Anchors*", "Anchor Drill Bit", "Toggle Bolts*", "Stud Finder"],
        "Nails": ["Brad Nails*", "Brad Nailer", "Finish Nails*", "Nail Set"],
    },
    "Janitorial": {
        "Cleaning": ["Microfiber Cloths*", "Spray Bottle", "Degreaser Cleaner*", "Scrub Brush"],
        "Waste": ["Trash Bags*", "Step Trash Can", "Compactor Bags*", "Recycling Bin"],
        "Floor Care": ["Wet Mop", "Mop Refills*", "Push Broom", "Dust Pan"],
    },
    "Measuring": {
        "Layout": ["Tape Measure", "Carpenter Pencils*", "Chalk Line", "Chalk Refill*"],
        "Levels": ["Torpedo Level", "Laser Level", "Tripod Stand", "Level Vials*"],
        "Gauges": ["Digital Caliper", "Caliper Batteries*", "Micrometer", "Feeler Gauge Set"],
    },
    "Plumbing": {
        "Pipes": ["PVC Pipe Cutter", "PVC Cement*", "Pipe Wrench", "Plumber Tape*"],
        "Drains": ["Drain Snake", "Drain Cleaner*", "Plunger", "Hair Catcher*"],
        "Faucets": ["Kitchen Faucet", "Faucet Aerator*", "Shower Head", "Shower Filter Cartridge*"],
    },
    "Safety Gear": {
        "Hearing": ["Ear Muffs", "Foam Ear Plugs*", "Ear Plug Dispenser", "Corded Ear Plugs*"],
        "Respiratory": ["Half Face Respirator", "Respirator Filters*", "Dust Masks*", "Mask Storage Case"],
        "Hand Protection": ["Work Gloves*", "Cut Resistant Gloves*", "Glove Clips", "Impact Gloves"],
    },
}
ADJECTIVES = ["Heavy-Duty", "Professional", "Compact", "Premium", "Industrial", "Lightweight", "Ergonomic",
              "Durable", "Portable", "Precision", "Universal", "High-Performance", "Economy", "Deluxe"]
SPECS = ["12-Pack", "2-Pack", "50-Count", "100-Count", "1/2-Inch", "1/4-Inch", "20V", "12V", "500 ml",
         "1 Gallon", "16 oz", "Large", "Medium", "Small", "Kit", "Set of 6"]
BRAND_A = ["Vol", "Dura", "Pro", "Max", "Tek", "Hex", "Nova", "Ferro", "Sci", "Omni", "Apex", "Brite", "Kor", "Zen"]
BRAND_B = ["taro", "line", "craft", "works", "forge", "lab", "core", "mark", "tech", "ridge", "well", "bolt"]
PHRASES = ["Built for daily use in the workshop and on the job site.",
           "Designed for reliable results in professional and home projects.",
           "Tested for long service life and consistent quality.",
           "Easy to store, easy to use, backed by a one-year warranty."]


def product_types() -> list[tuple[str, str, str, bool, int]]:
    """Flat list of (category, subcategory, noun, consumable, complement_index)."""
    out = []
    for cat, subs in CATALOG.items():
        for sub, nouns in subs.items():
            base = len(out)
            for j, noun in enumerate(nouns):
                out.append((cat, sub, noun.rstrip("*"), noun.endswith("*"), base + (j + 1) % len(nouns)))
    return out


def _brands(rng: np.random.Generator) -> dict[str, list[str]]:
    """Six brand names per category, distinct across the shop."""
    names = [a + b for a in BRAND_A for b in BRAND_B]
    rng.shuffle(names)
    return {cat: names[6 * k: 6 * k + 6] for k, cat in enumerate(CATALOG)}


def make_items(n_items: int, rng: np.random.Generator):
    """Item rows and, per item, its product type and brand index. -> (rows, type (n,), brand (n,))"""
    types = product_types()
    brands = _brands(rng)
    # every type gets items; type sizes vary so some kinds of product are more common
    type_of = np.concatenate([np.arange(len(types)), rng.integers(0, len(types), n_items - len(types))]) \
        if n_items >= len(types) else rng.choice(len(types), n_items, replace=False)
    type_of = np.sort(type_of)
    brand_of = rng.integers(0, 6, n_items)
    adj = rng.integers(0, len(ADJECTIVES), n_items)
    spec = rng.integers(0, len(SPECS), n_items)
    model = rng.integers(100, 10000, n_items)
    phrase = rng.integers(0, len(PHRASES), n_items)
    rows = []
    for i in range(n_items):
        cat, sub, noun, _, comp = types[type_of[i]]
        brand = brands[cat][brand_of[i]]
        title = f"{brand} {ADJECTIVES[adj[i]]} {noun} {SPECS[spec[i]]} ({brand[:2].upper()}-{model[i]})"
        desc = (f"{ADJECTIVES[adj[i]]} {noun.lower()} for {sub.lower()} work in the {cat.lower()} range. "
                f"Pairs well with a {types[comp][2].lower()}. {PHRASES[phrase[i]]}")
        rows.append((i, title, desc, brand, [cat, sub]))
    return rows, type_of, brand_of


class _Picker:
    """Draws items by Zipf popularity within a product type, optionally of one brand."""

    def __init__(self, type_of: np.ndarray, brand_of: np.ndarray, rng: np.random.Generator):
        self.rng = rng
        n = len(type_of)
        pop = 1.0 / rng.permutation(np.arange(1, n + 1)) ** 0.8
        self.by_type: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.by_type_brand: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        order = np.lexsort((brand_of, type_of))
        for t in np.unique(type_of):
            ids = order[type_of[order] == t]
            self.by_type[int(t)] = (ids, np.cumsum(pop[ids]))
            for b in np.unique(brand_of[ids]):
                sub = ids[brand_of[ids] == b]
                self.by_type_brand[(int(t), int(b))] = (sub, np.cumsum(pop[sub]))

    def pick(self, t: int, brand: int | None) -> int:
        ids, cum = self.by_type_brand.get((t, brand), self.by_type[t]) if brand is not None else self.by_type[t]
        return int(ids[min(np.searchsorted(cum, self.rng.random() * cum[-1]), len(ids) - 1)])


def make_sequences(cfg: SyntheticConfig, type_of: np.ndarray, brand_of: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users' sequences as (user (m,), item (m,), timestamp (m,)) arrays."""
    types = product_types()
    present = sorted(set(type_of.tolist()))
    cats = list(CATALOG)
    types_in_cat = {c: [t for t in present if types[t][0] == c] or present for c in cats}
    picker = _Picker(type_of, brand_of, rng)
    users, items, times = [], [], []
    for u in tqdm(range(cfg.n_users), desc="synthetic users", unit="user", disable=cfg.n_users < 50_000):
        prefs = rng.choice(len(cats), size=int(rng.integers(1, 3)), replace=False)
        fav_brands = rng.choice(6, size=2, replace=False)
        length = int(rng.integers(cfg.min_length, cfg.max_length + 1))
        t = int(rng.integers(1_500_000_000, 1_540_000_000))
        seq: list[int] = []
        for _ in range(length):
            r = rng.random()
            consumables = [i for i in seq if types[type_of[i]][3]]
            if seq and r < cfg.p_complement and types[type_of[seq[-1]]][4] in picker.by_type:
                nxt = picker.pick(types[type_of[seq[-1]]][4], int(brand_of[seq[-1]]))
            elif seq and r < cfg.p_complement + cfg.p_repeat and consumables:
                nxt = consumables[int(rng.integers(len(consumables)))]
            else:
                cat = cats[prefs[int(rng.integers(len(prefs)))]] if rng.random() < 0.9 else cats[int(rng.integers(len(cats)))]
                pool = types_in_cat[cat]
                brand = int(fav_brands[int(rng.integers(2))]) if rng.random() < cfg.p_brand else None
                nxt = picker.pick(pool[int(rng.integers(len(pool)))], brand)
            seq.append(nxt)
            users.append(u)
            items.append(nxt)
            times.append(t)
            t += int(rng.integers(3600, 30 * 86400))
    return np.asarray(users), np.asarray(items), np.asarray(times)


def generate_synthetic(cfg: SyntheticConfig | None = None, max_history: int = 10, split: str = "ratio") -> Loaded:
    """The synthetic catalog and users as a :class:`Loaded` (items, interactions, samples per split)."""
    from ray_rec.data.loaders import items_table

    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    rows, type_of, brand_of = make_items(cfg.n_items, rng)
    user, item, time = make_sequences(cfg, type_of, brand_of, rng)
    inter = interactions_table(user, item, time)
    info = {"generator": "synthetic", "product_types": len(product_types()), "seed": cfg.seed}
    return Loaded(items_table(rows), inter, build_splits(inter, max_history, split), info)
