"""Text: sentences as word-id tensors, WordNet synonyms, paraphrases and the language models steps read."""
