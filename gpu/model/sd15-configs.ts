// The raw diffusers configs of Stable Diffusion 1.5, for building its shapes without its files (benchmarks,
// memory estimates and tests).
/** SD 1.5's configs (stable-diffusion-v1-5, sd-engine.md §1.1), every other field at its class default. */
export const SD15_CONFIGS = {
  textEncoder: {
    vocab_size: 49408, hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12,
    max_position_embeddings: 77, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, projection_dim: 768,
  },
  unet: {
    sample_size: 64, in_channels: 4, out_channels: 4, block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2,
    attention_head_dim: 8, cross_attention_dim: 768, norm_num_groups: 32, norm_eps: 1e-5,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  },
  vae: {
    in_channels: 3, out_channels: 3, latent_channels: 4, block_out_channels: [128, 256, 512, 512], layers_per_block: 2,
    norm_num_groups: 32, sample_size: 512, down_block_types: Array(4).fill('DownEncoderBlock2D'),
    up_block_types: Array(4).fill('UpDecoderBlock2D'),
  },
  scheduler: {
    _class_name: 'PNDMScheduler', num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
    set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, clip_sample: false,
  },
};
