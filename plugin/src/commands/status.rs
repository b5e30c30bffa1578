//! STATUS (CNI 1.1.0): can an ADD be served right now?
//!
//! Not available (code 50) when the master interface is missing or a range set has no free address;
//! a delegate IPAM is asked too. Purely informational for the runtime: ADD still checks everything.

use super::resolve_master;
use crate::cni::Request;
use crate::config::NetConf;
use crate::error::Error;
use crate::ipam;
use crate::netlink::Runtime;

/// Runs STATUS.
pub fn status(request: &Request, conf: &NetConf) -> Result<(), Error> {
    conf.require_1_1("STATUS")?;
    let runtime = Runtime::new()?;
    let host = runtime.connect()?;
    if let Err(err) = resolve_master(&host, &conf.master) {
        return Err(Error::Unavailable(err.to_string()));
    }
    ipam::status(request, conf)
}
