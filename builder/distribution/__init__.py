"""Getting a bundle's models to people: Ollama and LM Studio (`register`, `modelfile`) and the
Hugging Face Hub (`publish`)."""
