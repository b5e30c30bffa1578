//! GC (CNI 1.1.0): release what no listed attachment uses, such as the reservations of pods whose DEL
//! never came (node crash, runtime state lost). The runtime guarantees no ADD or DEL runs meanwhile,
//! and the namespaces of stale attachments are gone, so only the store needs cleaning.

use serde_json::Value;

use crate::cni::Request;
use crate::config::NetConf;
use crate::error::Error;
use crate::ipam;

/// Runs GC.
pub fn gc(request: &Request, conf: &NetConf, raw: &Value) -> Result<(), Error> {
    super::require_1_1(conf, "GC")?;
    let valid = ipam::valid_attachments(raw)?;
    ipam::gc(request, conf, &valid)
}
