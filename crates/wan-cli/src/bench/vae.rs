//! `wan bench vae`.

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `wan bench vae`.
#[derive(Args, Debug)]
pub struct VaeArgs {
    #[command(flatten)]
    common: super::Common,
}

/// Runs the case.
pub fn run(_args: VaeArgs) -> Result<()> {
    bail!("wan bench vae is not implemented yet")
}
