"""What the Ray Train stages (SFT, GRPO) share: their ``train``/``scaling`` config sections and the launcher.

* ``config.py`` -- :class:`TrainSection`, :class:`ScalingSection`, the :class:`RayTrainStage` mixin;
* ``launch.py`` -- the ``TorchTrainer`` of a stage, its best checkpoint, the model export, fault injection.

The worker loop itself still lives in ``ray_rec/train/loop.py`` (GRPO's loop imports its backend from there).
"""
