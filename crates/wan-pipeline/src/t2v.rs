//! Text-to-video (Wan2.1 T2V): encode the prompts, denoise a latent with the DiT under
//! classifier-free guidance, decode it with the VAE. This module only wires the parts together.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use wan_dit::{DitConfig, WanTransformer};
use wan_sched::{Sampler, SamplerKind, SchedulerConfig, cfg_combine, guidance_enabled};
use wan_text::{EmbeddingCache, TextEncoder};
use wan_vae::WanVae;
use wan_video::Frames;

use crate::error::{Error, Result};
use crate::model::{Layout, ModelFiles};
use crate::noise;
use crate::progress::{Progress, ProgressEvent, Stage};
use crate::request::{ModelDefaults, ResolvedRequest};
use crate::variant::{TEXT_LEN, Variant};

/// Official-layout sampler shift for Wan2.1 text-to-video.
const OFFICIAL_T2V_SHIFT: f64 = 5.0;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Weight and compute dtype of the DiT (the VAE and text encoder run in f32).
    pub dtype: DType,
    /// Where to run.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// Seconds spent in each stage of one generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageTimings {
    /// Prompt encoding.
    pub encode: f64,
    /// The denoising loop.
    pub denoise: f64,
    /// VAE decoding.
    pub decode: f64,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The decoded frames, f32 in [0, 1].
    pub frames: Frames,
    /// Time per stage.
    pub timings: StageTimings,
}

/// A loaded Wan2.1 text-to-video model.
pub struct TextToVideo {
    name: String,
    text: EmbeddingCache,
    dit: WanTransformer,
    vae: WanVae,
    scheduler: SchedulerConfig,
    defaults: ModelDefaults,
    device: Device,
}

/// The checkpoint's transformer config.
fn dit_config(files: &ModelFiles) -> Result<DitConfig> {
    Ok(DitConfig::from_json_file(
        &files.transformer().join("config.json"),
    )?)
}

/// The checkpoint's sampler settings: diffusers' file and schedule, or the official schedule.
fn scheduler_config(files: &ModelFiles) -> Result<SchedulerConfig> {
    Ok(match (files.layout(), files.scheduler_config()) {
        (Layout::Diffusers, Some(path)) => SchedulerConfig::from_json_file(path)?,
        _ => SchedulerConfig::for_model_dir(files.root(), OFFICIAL_T2V_SHIFT)?,
    })
}

impl TextToVideo {
    /// The defaults of the model in `files`, read from its configs without loading any weights,
    /// so that a request can be validated before heavy work.
    pub fn defaults_for(files: &ModelFiles) -> Result<ModelDefaults> {
        let cfg = dit_config(files)?;
        if cfg.has_image_input() || cfg.in_channels != cfg.out_channels {
            return Err(Error::UnsupportedModel {
                model: files.name().to_string(),
                reason: format!(
                    "its transformer takes {} input channels for {} output channels (an image-to-video model); only text-to-video is supported",
                    cfg.in_channels, cfg.out_channels
                ),
            });
        }
        Ok(Variant::detect(&cfg).defaults(scheduler_config(files)?.shift))
    }

    /// Loads the text encoder, the DiT and the VAE of the model in `files`.
    pub fn load(files: &ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let defaults = Self::defaults_for(files)?;
        let scheduler = scheduler_config(files)?;
        let encoder = TextEncoder::from_paths(
            &files.tokenizer(),
            &files.text_encoder(),
            DType::F32,
            &opts.device,
        )?;
        let dit = WanTransformer::from_path(&files.transformer(), opts.dtype, &opts.device)?;
        let vae = WanVae::from_path(&files.vae(), DType::F32, &opts.device)?;
        if dit.config().text_dim != encoder.hidden_size() {
            return Err(Error::UnsupportedModel {
                model: files.name().to_string(),
                reason: format!(
                    "the text encoder is {} wide but the transformer expects text_dim {}",
                    encoder.hidden_size(),
                    dit.config().text_dim
                ),
            });
        }
        if dit.config().in_channels != vae.config().z_dim {
            return Err(Error::UnsupportedModel {
                model: files.name().to_string(),
                reason: format!(
                    "the VAE has {} latent channels but the transformer takes {}",
                    vae.config().z_dim,
                    dit.config().in_channels
                ),
            });
        }
        Ok(Self {
            name: files.name().to_string(),
            text: EmbeddingCache::new(encoder),
            dit,
            vae,
            scheduler,
            defaults,
            device: opts.device.clone(),
        })
    }

    /// The model's name (folder or repo id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's generation defaults.
    pub fn defaults(&self) -> &ModelDefaults {
        &self.defaults
    }

    /// The latent shape `[C, T, H/8, W/8]` of a request.
    pub fn latent_shape(&self, req: &ResolvedRequest) -> [usize; 4] {
        let s = self.vae.config().spatial_factor();
        let t = self.vae.config().temporal_factor();
        [
            self.dit.config().in_channels,
            (req.frames as usize - 1) / t + 1,
            req.height as usize / s,
            req.width as usize / s,
        ]
    }

    /// Checks that user-given initial latents have the request's latent shape (with or without
    /// a leading batch dimension of 1) and returns them as `[1, C, T, H, W]` f32.
    pub fn check_init_latents(&self, req: &ResolvedRequest, latents: &Tensor) -> Result<Tensor> {
        let want = self.latent_shape(req);
        let dims = latents.dims();
        let ok = dims == want || (dims.len() == 5 && dims[0] == 1 && dims[1..] == want);
        if !ok {
            return Err(Error::InitLatents {
                reason: format!(
                    "shape {dims:?} does not match the request's latent shape {want:?} ({} frames of {}x{})",
                    req.frames, req.width, req.height
                ),
            });
        }
        Ok(latents
            .to_dtype(DType::F32)?
            .to_device(&self.device)?
            .reshape((1, want[0], want[1], want[2], want[3]))?)
    }

    /// Generates a video for `req`. Starts from `init_latents` when given (see
    /// [`Self::check_init_latents`]), else from noise drawn from `req.seed` exactly as PyTorch's
    /// CPU generator draws it. Stops between steps when `progress` says it is cancelled.
    pub fn generate(
        &self,
        req: &ResolvedRequest,
        init_latents: Option<&Tensor>,
        progress: &mut dyn Progress,
    ) -> Result<Generated> {
        let mut timings = StageTimings::default();
        let kind: SamplerKind = req.sampler.parse()?;
        let mut sampler = Sampler::new(kind, &self.scheduler, req.steps as usize, Some(req.shift))?;
        let cfg = guidance_enabled(req.guidance);

        let start = Instant::now();
        let prompts = if cfg { 2 } else { 1 };
        progress.event(&ProgressEvent::StageStarted {
            stage: Stage::Encode,
            total: prompts,
        });
        let dtype = self.dit.dtype();
        let cond = self.text.get(&req.prompt, TEXT_LEN)?.to_dtype(dtype)?;
        let uncond = if cfg {
            Some(
                self.text
                    .get(&req.negative_prompt, TEXT_LEN)?
                    .to_dtype(dtype)?,
            )
        } else {
            None
        };
        timings.encode = start.elapsed().as_secs_f64();
        progress.event(&ProgressEvent::StageFinished {
            stage: Stage::Encode,
            seconds: timings.encode,
        });

        let mut latents = match init_latents {
            Some(l) => self.check_init_latents(req, l)?,
            None => {
                let [c, t, h, w] = self.latent_shape(req);
                noise::randn(req.seed, (1, c, t, h, w), &self.device)?
            }
        };

        let start = Instant::now();
        let timesteps = sampler.timesteps().to_vec();
        let total = timesteps.len();
        progress.event(&ProgressEvent::StageStarted {
            stage: Stage::Denoise,
            total,
        });
        for (i, t) in timesteps.iter().enumerate() {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let timestep = Tensor::new(&[*t as f32], &self.device)?;
            let input = latents.to_dtype(dtype)?;
            let v_cond = self.dit.forward(&input, &timestep, &cond, None)?;
            let v = match &uncond {
                Some(uncond) => {
                    let v_uncond = self.dit.forward(&input, &timestep, uncond, None)?;
                    cfg_combine(&v_uncond, &v_cond, req.guidance)?
                }
                None => v_cond,
            };
            latents = sampler.step(&v.to_dtype(DType::F32)?, &latents)?;
            progress.event(&ProgressEvent::Advanced {
                stage: Stage::Denoise,
                done: i + 1,
                total,
            });
        }
        timings.denoise = start.elapsed().as_secs_f64();
        progress.event(&ProgressEvent::StageFinished {
            stage: Stage::Denoise,
            seconds: timings.denoise,
        });
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }

        let start = Instant::now();
        let latent_frames = latents.dim(2)?;
        progress.event(&ProgressEvent::StageStarted {
            stage: Stage::Decode,
            total: latent_frames,
        });
        let z = self.vae.denormalize(&latents)?;
        let video = self.vae.decode_with_progress(&z, &mut |done, total| {
            progress.event(&ProgressEvent::Advanced {
                stage: Stage::Decode,
                done,
                total,
            })
        })?;
        let (_, _, f, h, w) = video.dims5()?;
        let data = video
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let frames = Frames::from_decoder_output(&data, f, h, w, req.fps)?;
        timings.decode = start.elapsed().as_secs_f64();
        progress.event(&ProgressEvent::StageFinished {
            stage: Stage::Decode,
            seconds: timings.decode,
        });
        Ok(Generated { frames, timings })
    }
}
