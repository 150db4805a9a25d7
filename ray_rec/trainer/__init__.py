"""The trainer kit: what the Ray Train stages (SFT, GRPO, and SASRec where it fits) share.

* ``config.py`` -- :class:`TrainSection`, the :class:`RayTrainStage` mixin;
* ``schedule.py`` -- learning rate, step counts, evaluation cadence, each rank's examples per step;
* ``backend.py`` -- the DeepSpeed ZeRO / DDP :class:`Backend` (optimizer, micro-batch backward, step);
* ``deepspeed_config.py`` -- the DeepSpeed config dict and the precision choice;
* ``checkpoint.py`` -- trainer state, restore from and report to Ray Train checkpoints;
* ``progress.py`` -- throughput, progress lines, best tracking and early stopping, fault injection;
* ``launch.py`` -- the ``TorchTrainer`` of a stage, its best checkpoint, the model export.

The worker loops stay with their stages: ``ray_rec/train/loop.py`` (SFT), ``ray_rec/rl/loop.py`` (GRPO),
``ray_rec/baseline/train.py`` (SASRec).
"""
