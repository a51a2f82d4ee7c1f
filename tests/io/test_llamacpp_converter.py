"""GGUF files as llama.cpp writes them: the tokenizer arrays its converter always writes (and no
`{arch}.vocab_size`), and, where llama.cpp's tree is present (MOEPY_LLAMACPP_DIR, e.g. from
scripts/get_llamacpp.sh), files made by its own convert_hf_to_gguf.py from a tiny transformers checkpoint."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gguf_files import write_gguf
from moepy.configs import ModelConfig
from moepy.io import open_checkpoint, open_gguf
from moepy.moe import MoELayer
from tiny_models import H, saved_model

LLAMACPP = os.environ.get("MOEPY_LLAMACPP_DIR", "")
HERE = os.path.dirname(__file__)


def test_tokenizer_arrays_and_no_vocab_size(tmp_path):
    """Regression: the validating pass skips the tokenizer arrays; the config used to take len() of one."""
    d, _ = saved_model("olmoe", "float32")
    ck = open_checkpoint(d)
    write_gguf(tmp_path / "m.gguf", ck, ck.config, tokenizer=True)
    g = open_gguf(tmp_path / "m.gguf")
    assert g.model_config.vocab_size == ck.config["vocab_size"]
    x = np.random.default_rng(1).standard_normal((4, H)).astype(np.float32)
    assert np.array_equal(g.moe_layer(1)(x), MoELayer.from_hf(ck.config, ck, 1)(x))


CONVERT = r'''
import sys
root = sys.argv.pop(1)
sys.path[:0] = [root, root + "/gguf-py"]
import convert_hf_to_gguf as conv
from conversion import base
# the tiny test tokenizer is not in the converter's table of known BPE pre-tokenizers: call it gpt-2
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv[0] = root + "/convert_hf_to_gguf.py"
conv.main()
'''


def _tiny_checkpoint(path, kind):
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 20],
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                special_tokens=["<|endoftext|>"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                                bos_token="<|endoftext|>")
    torch.manual_seed(0)
    common = dict(vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_experts=8,
                  num_experts_per_tok=2, max_position_embeddings=128)
    if kind == "olmoe":
        model = transformers.OlmoeForCausalLM(transformers.OlmoeConfig(intermediate_size=32, **common))
    else:
        model = transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(
            intermediate_size=128, moe_intermediate_size=32, num_key_value_heads=2, head_dim=16,
            norm_topk_prob=True, **common))  # as the released Qwen3 MoEs; llama.cpp's qwen3moe always renormalises
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    model.save_pretrained(path)
    fast.save_pretrained(path)


@pytest.mark.skipif(not os.path.isfile(os.path.join(LLAMACPP, "convert_hf_to_gguf.py")),
                    reason="llama.cpp's tree is not here (set MOEPY_LLAMACPP_DIR; scripts/get_llamacpp.sh fetches it)")
@pytest.mark.parametrize("kind", ["olmoe", "qwen3_moe"])
def test_files_made_by_llamacpps_converter(tmp_path, kind):
    _tiny_checkpoint(tmp_path, kind)
    ck = open_checkpoint(tmp_path)
    x = np.random.default_rng(2).standard_normal((7, 64)).astype(np.float32)
    for outtype in ("f32", "q8_0"):
        out = tmp_path / f"{outtype}.gguf"
        subprocess.run([sys.executable, "-c", CONVERT, LLAMACPP, str(tmp_path), "--outtype", outtype,
                        "--outfile", str(out)], check=True, capture_output=True)
        g = open_gguf(out)
        assert g.model_config == ModelConfig.from_hf(ck.config)
        for layer in range(2):
            ref = MoELayer.from_hf(ck.config, ck, layer)(x)
            got = g.moe_layer(layer)(x)
            if outtype == "f32":  # the very weights: bitwise the same layer
                assert np.array_equal(got, ref), (kind, layer)
            else:  # llama.cpp's Q8_0 blocks run as they are, with INT8 activations: int8's error, not more
                assert np.abs(got - ref).max() <= 0.04 * np.abs(ref).max(), (kind, layer)
