"""The DeepCL method: the change model, its heads, decoders and distance prior, its losses, the training task and the pseudo-change augmentation."""
