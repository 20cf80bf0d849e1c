//! `wan`: generate video with Wan 2.1 / 2.2 models, benchmark the engine, serve jobs.

mod bench;
mod generate;
mod remote;
mod serve;

use anyhow::Result;

/// mimalloc keeps freed pages for reuse: the engine allocates many tensors of tens of MB, and
/// with the system allocator each of them is mapped and faulted in afresh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (libmimalloc-sys names only mimalloc 2's).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for reuse: purging it made every later tensor fault its pages in
/// afresh (a quarter of a VAE decode went to the kernel zeroing pages). Peak memory is unchanged.
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
use clap::{Parser, Subcommand};

/// Generate video with the open Wan 2.1 / 2.2 models.
#[derive(Parser)]
#[command(name = "wan", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a video from a prompt (text-to-video).
    Generate(generate::GenerateArgs),
    /// Time engine components on this machine, beside PyTorch with `--peer`.
    Bench(bench::BenchCommand),
    /// Serve generation jobs over HTTP from a durable queue.
    Serve(serve::ServeArgs),
}

fn main() -> Result<()> {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Serve(args) => serve::run(args),
    }
}
