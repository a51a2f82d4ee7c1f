"""Upper bounds of model sizes: a config.json with an absurd value is refused before anything loops over it
or allocates for it. Imports nothing (configs and the config.json readers both use it)."""

# upper bounds of the size fields (far above any released model: DeepSeek-V3 has 61 layers, 129,280 tokens,
# Switch-C 2048 experts; expert ids are int32 in the kernels)
MAX_SIZE = {"vocab_size": 1 << 24, "hidden_size": 1 << 17, "num_layers": 4096, "num_heads": 4096,
            "num_kv_heads": 4096, "head_dim": 1 << 14, "num_experts": 1 << 16, "top_k": 1 << 12,
            "expert_intermediate_size": 1 << 20, "dense_intermediate_size": 1 << 20,
            "shared_intermediate_size": 1 << 21, "residual_intermediate_size": 1 << 20,
            "num_shared_experts": 1 << 12, "moe_latent_size": 1 << 17, "q_lora_rank": 1 << 16, "kv_lora_rank": 1 << 16,
            "qk_nope_head_dim": 1 << 14, "qk_rope_head_dim": 1 << 14, "v_head_dim": 1 << 14,
            "local_attention_window": 1 << 30, "max_context": 1 << 31, "mtp_layers": 64}
MAX_PARAMS = 1 << 50  # a model's parameter count (1e15); DeepSeek-V3 has 6.7e11
