//! The CNI protocol: environment and stdin in, result or error JSON out, in the requested version.
//!
//! Everything that depends on the spec's wire format lives here, so the commands only deal with the
//! internal model ([`CniResult`]) and typed requests ([`Request`], [`CniArgs`]).

pub mod args;
pub mod env;
pub mod reply;
pub mod result;
pub mod version;

pub use args::CniArgs;
pub use env::{Command, Request};
pub use reply::ErrorReply;
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::Version;
