//! The error object a failed command prints on stdout, in the request's version.
//!
//! It lives with the protocol rather than with the error type so that `error` stays below `cni`: the
//! error decides the code and the message, the protocol decides how they go on the wire.

use serde::Serialize;

use super::version::{self, Version};
use crate::error::Error;

/// The CNI error object: `{"cniVersion", "code", "msg", "details"}`.
#[derive(Debug, Serialize)]
pub struct ErrorReply {
    /// The request's version (the newest supported one if it had none usable).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The CNI code.
    pub code: u32,
    /// The message, naming the fix.
    pub msg: String,
    /// Extra context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ErrorReply {
    /// The reply for `err` to a request of `version` (none when the request's version was unusable).
    pub fn of(err: &Error, version: Option<Version>) -> ErrorReply {
        let details = match err {
            // A caller that sent a version roslan does not speak needs the list it can choose from.
            Error::IncompatibleVersion { .. } => Some(format!(
                "supported versions: {}",
                version::supported_strings().join(", ")
            )),
            _ => err.details(),
        };
        ErrorReply {
            cni_version: version.unwrap_or_else(Version::latest).as_str().to_string(),
            code: err.code(),
            msg: err.to_string(),
            details,
        }
    }
}
