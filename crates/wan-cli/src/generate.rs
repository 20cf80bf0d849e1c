//! `wan generate`: text-to-video on this machine.
//!
//! Everything the user typed is checked before any weight is read: the output path, the model
//! folder (or repo id) and its configs, every request field, and the `--init-latents` file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use wan_pipeline::{
    GenerateRequest, HubOptions, LoadOptions, ModelFiles, Progress, ProgressEvent, ResolvedRequest,
    Stage, TextToVideo,
};
use wan_video::{Metadata, check_output_path, write_output};

/// Name of the tensor `--init-latents` reads.
const INIT_LATENTS_TENSOR: &str = "latents";

/// Arguments of `wan generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The prompt (or use --prompt).
    #[arg(value_name = "PROMPT", conflicts_with = "prompt_flag")]
    prompt: Option<String>,
    /// The prompt.
    #[arg(long = "prompt", id = "prompt_flag", value_name = "PROMPT")]
    prompt_flag: Option<String>,
    /// A local model folder (diffusers or official layout) or a Hugging Face repo id such as
    /// Wan-AI/Wan2.1-T2V-1.3B-Diffusers (downloaded once into the Hugging Face cache).
    /// With --server, the name of one of the server's models (its default when omitted).
    #[arg(long, env = "WAN_MODEL")]
    model: Option<String>,
    /// What to avoid; the model's default negative prompt when omitted ("" for none).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Width in pixels, a multiple of 16 (model default when omitted).
    #[arg(long)]
    width: Option<u32>,
    /// Height in pixels, a multiple of 16 (model default when omitted).
    #[arg(long)]
    height: Option<u32>,
    /// Number of frames, 4k+1 (model default when omitted).
    #[arg(long)]
    frames: Option<u32>,
    /// Denoising steps, at least 1.
    #[arg(long)]
    steps: Option<u32>,
    /// Classifier-free guidance scale, >= 0 (1 or less turns guidance off: one DiT pass per step).
    #[arg(long, allow_negative_numbers = true)]
    guidance: Option<f64>,
    /// Flow-matching timestep shift (> 0).
    #[arg(long, allow_negative_numbers = true)]
    shift: Option<f64>,
    /// Sampler: unipc, euler or dpm++.
    #[arg(long)]
    sampler: Option<String>,
    /// Random seed for the initial noise (random when omitted; always printed and recorded).
    #[arg(long)]
    seed: Option<u64>,
    /// Frames per second of the output (the model's default when omitted: 16 for Wan2.1).
    #[arg(long)]
    fps: Option<u32>,
    /// Output file; the extension picks the format: .mp4 (H.264), .gif, .webp, .safetensors
    /// (f32 frames), or a path without extension for a folder of PNG frames.
    #[arg(long, short = 'o', default_value = "output.mp4")]
    output: PathBuf,
    /// Start from these latents (a safetensors file with a tensor `latents` of the latent
    /// shape) instead of seeded noise.
    #[arg(long, value_name = "FILE")]
    init_latents: Option<PathBuf>,
    /// Weight dtype of the diffusion transformer.
    #[arg(long, value_enum, default_value_t = WeightDType::F32)]
    dtype: WeightDType,
    /// Never touch the network: a repo id must already be in the Hugging Face cache (also
    /// turned on by HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// No progress bars.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print a JSON summary (output, seed, settings, timings per stage, peak memory) on stdout.
    #[arg(long)]
    json: bool,
    /// Submit to a running `wan serve` at this URL instead of generating here; its progress is
    /// shown from the server's event stream and the MP4 is downloaded to --output.
    #[arg(long, env = "WAN_SERVER", value_name = "URL")]
    server: Option<String>,
    /// API key for --server.
    #[arg(long, env = "WAN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

/// Weight dtypes of the transformer.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum WeightDType {
    F32,
    Bf16,
    F16,
}

impl WeightDType {
    fn candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

impl GenerateArgs {
    fn request(&self) -> Result<GenerateRequest> {
        let Some(prompt) = self.prompt.clone().or_else(|| self.prompt_flag.clone()) else {
            bail!("no prompt: give it as the first argument or with --prompt");
        };
        Ok(GenerateRequest {
            negative_prompt: self.negative_prompt.clone(),
            width: self.width,
            height: self.height,
            frames: self.frames,
            steps: self.steps,
            guidance: self.guidance,
            shift: self.shift,
            sampler: self.sampler.clone(),
            seed: self.seed,
            fps: self.fps,
            ..GenerateRequest::new(prompt)
        })
    }
}

/// Runs `wan generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let total = Instant::now();
    let request = args.request()?;
    check_output_path(&args.output).with_context(|| format!("output {}", args.output.display()))?;
    if let Some(server) = &args.server {
        return run_remote(server, &args, &request);
    }
    let Some(model_spec) = args.model.as_deref() else {
        bail!("no model: give --model (a folder or a Hugging Face repo id) or set WAN_MODEL");
    };

    let hub = HubOptions {
        offline: args.offline || HubOptions::from_env().offline,
        progress: !args.quiet && !args.json,
        ..HubOptions::default()
    };
    let files = ModelFiles::resolve(model_spec, &hub)?;
    let defaults = TextToVideo::defaults_for(&files)?;
    let req = request
        .validate(&defaults, u64::from(rand::random::<u32>()))
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
    let init_latents = args
        .init_latents
        .as_deref()
        .map(read_init_latents)
        .transpose()?;
    let show = !args.quiet && !args.json;
    if show {
        eprintln!(
            "{}: {}x{}, {} frames, {} steps, guidance {}, shift {}, {}, seed {}",
            files.name(),
            req.width,
            req.height,
            req.frames,
            req.steps,
            req.guidance,
            req.shift,
            req.sampler,
            req.seed
        );
    }

    let mut bars = Bars::new(show);
    let start = Instant::now();
    let spinner = bars.spinner("loading model");
    let opts = LoadOptions {
        dtype: args.dtype.candle(),
        device: Device::Cpu,
    };
    let model = TextToVideo::load(&files, &opts)?;
    spinner.finish_and_clear();
    let load_seconds = start.elapsed().as_secs_f64();
    if let Some(latents) = &init_latents {
        model
            .check_init_latents(&req, latents)
            .with_context(|| format!("--init-latents {}", display(&args.init_latents)))?;
    }

    let generated = model.generate(&req, init_latents.as_ref(), &mut bars)?;

    let start = Instant::now();
    let spinner = bars.spinner(&format!("writing {}", args.output.display()));
    let metadata = metadata(&req, files.name(), &args, &generated.frames);
    write_output(&args.output, &generated.frames, &metadata)
        .with_context(|| format!("writing {}", args.output.display()))?;
    spinner.finish_and_clear();
    let write_seconds = start.elapsed().as_secs_f64();

    let t = &generated.timings;
    if args.json {
        let summary = json!({
            "output": args.output,
            "seed": req.seed,
            "model": files.name(),
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt,
            "width": req.width,
            "height": req.height,
            "frames": req.frames,
            "fps": req.fps,
            "steps": req.steps,
            "guidance": req.guidance,
            "shift": req.shift,
            "sampler": req.sampler,
            "timings": {
                "load": load_seconds,
                "encode": t.encode,
                "denoise": t.denoise,
                "decode": t.decode,
                "write": write_seconds,
                "total": total.elapsed().as_secs_f64(),
            },
            "peak_memory_bytes": peak_memory_bytes(),
        });
        println!("{summary}");
    } else {
        println!(
            "wrote {} (seed {}) in {:.1} s: load {:.1} s, encode {:.1} s, denoise {:.1} s, decode {:.1} s, write {:.1} s",
            args.output.display(),
            req.seed,
            total.elapsed().as_secs_f64(),
            load_seconds,
            t.encode,
            t.denoise,
            t.decode,
            write_seconds
        );
    }
    Ok(())
}

/// Submits the request to `server` and waits for the result.
fn run_remote(server: &str, args: &GenerateArgs, request: &GenerateRequest) -> Result<()> {
    if args.init_latents.is_some() {
        bail!(
            "--init-latents is not supported with --server: the server draws its noise from the seed"
        );
    }
    let mut body = serde_json::to_value(request).context("encoding the request")?;
    if let (Some(model), Some(obj)) = (&args.model, body.as_object_mut()) {
        obj.insert("model".into(), json!(model));
    }
    let job = crate::remote::submit(
        server,
        args.api_key.as_deref(),
        &body,
        &args.output,
        args.quiet || args.json,
    )?;
    if args.json {
        let mut summary = job;
        if let Some(obj) = summary.as_object_mut() {
            obj.insert("output".into(), json!(args.output));
            obj.insert("server".into(), json!(server));
        }
        println!("{summary}");
    } else {
        println!(
            "wrote {} (seed {}) from {server}",
            args.output.display(),
            job["seed"]
        );
    }
    Ok(())
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map_or_else(String::new, |p| p.display().to_string())
}

/// Reads the tensor `latents` of a safetensors file.
fn read_init_latents(path: &Path) -> Result<Tensor> {
    if !path.is_file() {
        bail!("--init-latents {}: no such file", path.display());
    }
    let mut tensors = candle_core::safetensors::load(path, &Device::Cpu).with_context(|| {
        format!(
            "--init-latents {}: not a readable safetensors file",
            path.display()
        )
    })?;
    let Some(latents) = tensors.remove(INIT_LATENTS_TENSOR) else {
        let mut names: Vec<_> = tensors.keys().cloned().collect();
        names.sort();
        bail!(
            "--init-latents {}: no tensor named `{INIT_LATENTS_TENSOR}` (found: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    Ok(latents)
}

/// What is recorded in the output file.
fn metadata(
    req: &ResolvedRequest,
    model: &str,
    args: &GenerateArgs,
    frames: &wan_video::Frames,
) -> Metadata {
    let mut m = Metadata::describing(frames);
    m.prompt = req.prompt.clone();
    m.negative_prompt = req.negative_prompt.clone();
    m.seed = req.seed;
    m.model = model.to_string();
    m.sampler = req.sampler.clone();
    m.steps = req.steps;
    m.guidance = req.guidance as f32;
    m.shift = req.shift as f32;
    m.settings.insert("task".into(), json!("t2v"));
    m.settings.insert(
        "dtype".into(),
        json!(format!("{:?}", args.dtype).to_lowercase()),
    );
    if let Some(path) = &args.init_latents {
        m.settings.insert("init_latents".into(), json!(path));
    }
    m.settings.insert(
        "generator".into(),
        json!(concat!("wan-rs ", env!("CARGO_PKG_VERSION"))),
    );
    m
}

/// Peak resident memory of this process (`VmHWM`), when the OS reports it.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Progress bars for the encode, denoise and decode stages (hidden when quiet).
struct Bars {
    multi: MultiProgress,
    current: Option<ProgressBar>,
}

impl Bars {
    fn new(show: bool) -> Self {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            current: None,
        }
    }

    fn spinner(&self, message: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Load => "load",
        Stage::Encode => "encode",
        Stage::Denoise => "denoise",
        Stage::Decode => "decode",
        Stage::Write => "write",
    }
}

impl Progress for Bars {
    fn event(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::StageStarted { stage, total } => {
                let bar = self.multi.add(ProgressBar::new(*total as u64));
                let template = match stage {
                    Stage::Denoise => {
                        "{prefix:>8} [{bar:30}] {pos}/{len} steps  {elapsed} elapsed, ETA {eta}"
                    }
                    _ => "{prefix:>8} [{bar:30}] {pos}/{len}  {elapsed}",
                };
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(stage_label(*stage));
                self.current = Some(bar);
            }
            ProgressEvent::Advanced { done, .. } => {
                if let Some(bar) = &self.current {
                    bar.set_position(*done as u64);
                }
            }
            ProgressEvent::StageFinished { .. } => {
                if let Some(bar) = self.current.take() {
                    bar.finish();
                }
            }
        }
    }
}
