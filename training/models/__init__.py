"""Loading a policy (QLoRA / LoRA / full, adapters), the embedded tiny models, chat rendering and the lean output head. Imports run/ and data/."""
