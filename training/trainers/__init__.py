"""SFT, RL and DPO on one step loop with their configs, the optimizer, and the pipeline, ablation and evaluation frames the domain packages build on. The top layer."""
