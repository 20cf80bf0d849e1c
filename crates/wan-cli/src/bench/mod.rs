//! `wan bench`: times engine components, like `llama-bench`, and runs the PyTorch peer on the same
//! case in the same run so both figures print side by side.

mod dit;
mod vae;

use std::path::PathBuf;
use std::process::Command as Process;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::DType;
use clap::{Args, Subcommand, ValueEnum};

/// Arguments shared by every bench case.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Timed repetitions (the median is reported), after one untimed warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also run the PyTorch peer script (bench/*.py) on the same case, with the same thread count.
    #[arg(long)]
    pub peer: bool,
    /// Python interpreter for the peer (default: .venv/bin/python, then python3).
    #[arg(long, env = "WAN_PEER_PYTHON")]
    pub python: Option<PathBuf>,
}

/// `wan bench` subcommands.
#[derive(Args, Debug)]
pub struct BenchCommand {
    #[command(subcommand)]
    case: BenchCase,
}

#[derive(Subcommand, Debug)]
enum BenchCase {
    /// Decode latents with the Wan2.1 VAE (real configuration, random weights).
    Vae(vae::VaeArgs),
    /// One forward of the diffusion transformer at a preset's real block widths (random weights).
    Dit(dit::DitArgs),
}

/// Runs the chosen bench case.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd.case {
        BenchCase::Vae(args) => vae::run(args),
        BenchCase::Dit(args) => dit::run(args),
    }
}

/// Dtypes a bench case runs in.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchDType {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
}

impl BenchDType {
    /// The candle dtype.
    pub fn candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }

    /// The name the peers take.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }
}

/// One measured case: our figure, and the peer's when it ran.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Case name, e.g. `vae-decode f17 128x128`.
    pub case: String,
    /// Median seconds per run.
    pub seconds: f64,
    /// Achieved GFLOP/s, when the case knows its FLOP count.
    pub gflops: Option<f64>,
    /// Median seconds of the PyTorch peer on the same case.
    pub peer_seconds: Option<f64>,
}

/// Times `f` once untimed, then `repeats` times, and returns the median seconds.
pub fn median_seconds(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs the peer script `bench/<script>` with `args` and `--json`, and returns its `seconds`.
///
/// The script must print one JSON object with a `seconds` field on its last line.
pub fn run_peer(common: &Common, script: &str, args: &[String]) -> Result<f64> {
    let root = repo_root();
    let python = common.python.clone().unwrap_or_else(|| {
        let venv = root.join(".venv/bin/python");
        if venv.is_file() {
            venv
        } else {
            PathBuf::from("python3")
        }
    });
    let script_path = root.join("bench").join(script);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = Process::new(&python)
        .arg(&script_path)
        .args(args)
        .arg("--repeats")
        .arg(common.repeats.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .env("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
        .output()
        .with_context(|| {
            format!(
                "running peer {} with {}",
                script_path.display(),
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "peer {} failed: {}",
            script_path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(last)
        .with_context(|| format!("peer {} printed no JSON: {last:?}", script_path.display()))?;
    json.get("seconds")
        .and_then(|s| s.as_f64())
        .with_context(|| {
            format!(
                "peer {} printed no \"seconds\": {last}",
                script_path.display()
            )
        })
}

/// Prints results as a table, or one JSON object per case.
pub fn report(results: &[CaseResult], json: bool) {
    for r in results {
        if json {
            let obj = serde_json::json!({
                "case": r.case,
                "seconds": r.seconds,
                "gflops": r.gflops,
                "peer": "pytorch",
                "peer_seconds": r.peer_seconds,
                "speedup_vs_peer": r.peer_seconds.map(|p| p / r.seconds),
            });
            println!("{obj}");
        } else {
            let gflops = r.gflops.map_or("-".to_string(), |g| format!("{g:.1}"));
            let peer = r
                .peer_seconds
                .map_or("-".to_string(), |p| format!("{p:.3}"));
            let ratio = r
                .peer_seconds
                .map_or("-".to_string(), |p| format!("{:.2}x", p / r.seconds));
            println!(
                "{:<40} wan-rs {:>9.3} s  {:>8} GFLOP/s | pytorch {:>9} s | speedup {}",
                r.case, r.seconds, gflops, peer, ratio
            );
        }
    }
}

/// The repository root when run from a checkout (for the peer scripts), else the current folder.
fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .filter(|p| p.join("bench").is_dir())
        .unwrap_or_else(|| PathBuf::from("."))
}
