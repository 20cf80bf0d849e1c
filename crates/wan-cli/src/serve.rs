//! `wan serve`: runs the generation service.

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `wan serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {}

/// Runs the service until shut down.
pub fn run(_args: ServeArgs) -> Result<()> {
    bail!("wan serve is not implemented yet")
}
