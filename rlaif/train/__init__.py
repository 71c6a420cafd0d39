"""Training from AI feedback, thin over TRL: models, reward model, DPO (and GRPO in its module).

Every trained model is saved as a Hugging Face checkpoint directory (model + tokenizer), which
any command takes as the model string ``hf:DIR``. Beside the trainers: ``data`` (preference
files), ``models`` (load, LoRA, save), ``provenance`` and ``heldout`` (what a checkpoint was
trained on, and so which prompts stay held out), ``drift`` (the check that ends a run),
``curves`` (the training-curve PNG of every checkpoint), ``distributed`` (training under
``accelerate launch``: which process writes), ``trl_common`` (what the TRL trainers share).
"""
