//! `wan`: generate video with Wan 2.1 / 2.2 models, benchmark the engine, serve jobs.
fn main() {}
