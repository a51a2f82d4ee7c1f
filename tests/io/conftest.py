"""Shared builders of tests/io: tiny transformers MoE models saved with save_pretrained (sharded)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "families"))  # hf_blocks
