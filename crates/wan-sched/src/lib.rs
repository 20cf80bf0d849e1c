//! Flow-matching samplers for Wan: UniPC, Euler, DPM++ 2M, with flow shift and both schedules.
