"""A model behind an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp's server) as a
subject: the client, the server lm-probes starts itself, and parity with transformers."""
