//! Generation pipelines (text-to-video) wiring the Wan models and samplers together.
