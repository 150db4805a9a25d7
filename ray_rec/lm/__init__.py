"""The causal language model with SID tokens, as every stage that trains, ranks with or serves it sees it.

Modules, one idea each (SFT, GRPO and evaluation import them; none of them imports a stage):

* ``config.py`` -- :class:`ModelSection`, the ``model`` section of a stage config;
* ``model.py`` -- build the tokenizer (BPE trained on the catalogue, or a local folder's) with every SID
  token added, and the model (a small random Qwen2, or a local checkpoint); dropout and frozen base;
* ``prompts.py`` -- every prompt template and the one way text becomes token ids;
* ``checkpoint.py`` -- a trained model's folder: save, load, and its ``ray_rec_sft.json`` metadata;
* ``inputs.py`` -- the samples a trained model can be asked about (every item has a SID).
"""
