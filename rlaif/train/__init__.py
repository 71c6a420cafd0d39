"""Training from AI feedback, thin over TRL: models, reward model, DPO (and GRPO in its module).

Every trained model is saved as a Hugging Face checkpoint directory (model + tokenizer), which
any command takes as the model string ``hf:DIR``.
"""
