"""The built-in checkpoints (moepy/data/builtin, trained by scripts/train_builtin.py): they learned something (held-out
perplexity far below the unigram baseline), moepy's perplexity equals transformers' on them, and `python -m moepy
eval` with no checkpoint evaluates the default on its held-out text."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from moepy.eval import builtin, evaluate
from moepy.eval.perplexity import chunks, scored_positions
from moepy.nn import MoEModel

CTX, CHUNKS = 512, 4
NAMES = builtin.names()


def test_three_designs_ship():
    assert set(NAMES) >= {"mixtral", "finegrained", "deepseek_v3"}
    assert builtin.DEFAULT in NAMES


def _ids(model, domain):
    ids = np.asarray(model.tokenizer.encode(builtin.heldout_text(domain), add_special_tokens=False))
    return ids[: CHUNKS * CTX]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("domain", builtin.DOMAINS)
def test_builtin_learned_and_matches_transformers(name, domain):
    m = MoEModel.from_pretrained(builtin.path(name), progress=False)
    ids = _ids(m, domain)
    bos = m.tokenizer.bos_token_id
    assert m.tokenizer.adds_bos and bos == 0
    rep = evaluate(m, ids, ctx=CTX, bos=bos)
    assert rep["perplexity"] < 0.6 * rep["baseline_unigram_perplexity"], rep["perplexity"]
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM
    ref = AutoModelForCausalLM.from_pretrained(builtin.path(name), dtype=torch.float32,
                                               attn_implementation="eager").eval()
    nll = []
    for c in chunks(ids, CTX, bos):
        with torch.no_grad():
            lp = torch.log_softmax(ref(torch.from_numpy(c[None])).logits[0].double(), -1).numpy()
        pos = scored_positions(CTX, False)
        nll.append(-lp[pos, c[pos + 1]])
    assert abs(rep["perplexity"] / math.exp(np.concatenate(nll).mean()) - 1) < 1e-4


def test_eval_without_arguments_runs_the_default(tmp_path):
    r = subprocess.run([sys.executable, "-m", "moepy", "eval", "--json", str(tmp_path / "r.json"), "--quiet",
                        "--chunks", "4"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.load(open(tmp_path / "r.json"))
    assert rep["environment"]["checkpoint"].endswith(builtin.DEFAULT)
    assert rep["perplexity"] < 0.6 * rep["baseline_unigram_perplexity"]
    g = subprocess.run([sys.executable, "-m", "moepy", "generate", "--prompt", "In the beginning",
                        "--max-new-tokens", "8"], capture_output=True, text=True, timeout=300)
    assert g.returncode == 0 and g.stdout.startswith("In the beginning") and "tokens/s" in g.stderr
