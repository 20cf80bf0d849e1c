//! Job and batch ids. Ids are the only names from a request that reach the file system, so
//! they are checked against their exact form before any use.

/// Prefix of job ids.
pub const JOB_PREFIX: &str = "vid_";
/// Prefix of batch ids.
pub const BATCH_PREFIX: &str = "batch_";

/// 32 random lowercase hex digits.
pub fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh job id.
pub fn new_job_id() -> String {
    format!("{JOB_PREFIX}{}", random_hex())
}

/// A fresh batch id.
pub fn new_batch_id() -> String {
    format!("{BATCH_PREFIX}{}", random_hex())
}

fn has_form(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `id` has the form of a job id.
pub fn is_job_id(id: &str) -> bool {
    has_form(id, JOB_PREFIX)
}

/// Whether `id` has the form of a batch id.
pub fn is_batch_id(id: &str) -> bool {
    has_form(id, BATCH_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_ids_pass() {
        assert!(is_job_id(&new_job_id()));
        assert!(is_batch_id(&new_batch_id()));
        for bad in [
            "vid_../../etc/passwd",
            "vid_",
            "../vid_0123456789abcdef0123456789abcdef",
            "vid_0123456789ABCDEF0123456789ABCDEF",
            "vid_0123456789abcdef0123456789abcdef/..",
        ] {
            assert!(!is_job_id(bad), "{bad}");
        }
    }
}
