"""craik world model: an action-conditioned RGB-D world model for planning (ROS-free).

Modules: ``config`` (typed presets), ``observation`` (preprocessing), ``model``, ``data``
(episode windows), ``episode_io`` (the simulation's episode format), ``mcap_convert`` (robot
recordings; ``mcap_framing``, its torch-free first check), ``train`` / ``evaluate`` /
``export`` (``craik train``, ``wm-eval``, ``wm-export``), ``runtime`` (onnxruntime / torch /
TensorRT backends), ``checkpoint`` (safetensors + sha256).
"""
