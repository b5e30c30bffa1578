//! The node-name file.
//!
//! roslan's `nodeRanges` IPAM option gives each node its own slice of the LAN range, so that two
//! nodes never hand out the same address. The plugin runs as a short-lived child of the runtime and
//! cannot ask the API server which node it is on; the installer, which gets the name from the downward
//! API, leaves it in a file on the host for the plugin to read: the name and one newline.

use crate::error::Error;

/// The file's mode: readable by everyone (the name is no secret), written only by the installer.
pub const MODE: u32 = 0o644;

/// Checks that `name` is a Kubernetes node name (an RFC 1123 subdomain), so that a mistake in the
/// manifest shows here, not as an IPAM error on the first pod.
pub fn validate(name: &str) -> Result<(), Error> {
    let fail = |why: &str| Error::NodeName {
        name: name.into(),
        why: why.into(),
    };
    if name.is_empty() {
        return Err(fail("it is empty"));
    }
    if name.len() > 253 {
        return Err(fail("it is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(fail("each dot-separated part must have 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(fail("only lowercase letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(fail("a part may not start or end with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["robot-1", "node1.lab.example", "a"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Robot", "robot_1", "-x", "x-", "a..b", "a/b", "a\nb"] {
            let err = validate(bad).unwrap_err().to_string();
            assert!(err.contains("spec.nodeName"), "{bad}: {err}");
        }
    }
}
