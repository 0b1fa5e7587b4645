"""Records on disk and their validation, images, the toy task's data, and the batch types the sampler and the loss forward share. Imports run/ only."""
