//! `wan bench dit`.

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `wan bench dit`.
#[derive(Args, Debug)]
pub struct DitArgs {
    #[command(flatten)]
    common: super::Common,
}

/// Runs the case.
pub fn run(_args: DitArgs) -> Result<()> {
    bail!("wan bench dit is not implemented yet")
}
