//! The block agent's requests to the Kubernetes API, and nothing else: list the
//! NetworkAttachmentDefinitions, get this node's Node, list and create and delete block Leases. Every
//! request has a deadline, so an API server that stopped answering costs the agent's loop at most that
//! long; the loop, not this module, decides what to retry.

use std::path::Path;
use std::time::Duration;

use ipnetwork::IpNetwork;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::lease::{self, NodeRef};

/// The longest any one request may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer: connection refused, a timeout, TLS, a 5xx. Retried with backoff.
    #[error("{0}")]
    Unreachable(String),
    /// The API server answered no (403 forbidden, 422 invalid, ...): retrying the same request will
    /// not help until someone changes something (RBAC, the object).
    #[error("the API server refused: {0}")]
    Refused(String),
}

/// A block Lease as the API holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    /// The network it belongs to.
    pub network: String,
    /// The block.
    pub block: IpNetwork,
    /// The holder (a node name).
    pub holder: String,
    /// The object's uid (a delete names it, so only this very object is deleted).
    pub uid: Option<String>,
}

/// What a create came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// This node holds the block now.
    Leased(HeldLease),
    /// Another create won (409): someone else holds it.
    Taken,
}

/// The agent's API client.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    namespace: String,
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection refused"): kube's
/// own message alone rarely says what failed.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

fn classify(err: kube::Error) -> ApiError {
    match err {
        kube::Error::Api(status) if status.code < 500 && status.code != 429 => {
            ApiError::Refused(format!("{} {}: {}", status.code, status.reason, status.message))
        }
        other => ApiError::Unreachable(with_causes(&other)),
    }
}

async fn deadline<T>(what: &str, work: impl Future<Output = Result<T, kube::Error>>) -> Result<T, ApiError> {
    match tokio::time::timeout(REQUEST_DEADLINE, work).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(ApiError::Unreachable(format!(
            "{what}: no answer within {} s",
            REQUEST_DEADLINE.as_secs()
        ))),
    }
}

/// The NetworkAttachmentDefinition resource (Multus' CRD), read as untyped objects.
fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

fn held(lease: &Lease) -> Option<HeldLease> {
    let (network, block, holder) = lease::read_lease(lease)?;
    Some(HeldLease {
        network,
        block,
        holder,
        uid: lease.metadata.uid.clone(),
    })
}

impl Cluster {
    /// A client from `kubeconfig`, or from the pod's service account when there is none.
    pub async fn connect(kubeconfig: Option<&Path>, namespace: &str) -> Result<Cluster, ApiError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|err| ApiError::Refused(format!("kubeconfig {}: {err}", path.display())))?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|err| ApiError::Refused(format!("kubeconfig {}: {err}", path.display())))?
            }
            None => Config::incluster().map_err(|err| {
                ApiError::Refused(format!(
                    "no --kubeconfig and no in-cluster service account ({err}): mount the service account token \
                     (automountServiceAccountToken) or pass --kubeconfig"
                ))
            })?,
        };
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(REQUEST_DEADLINE);
        config.write_timeout = Some(REQUEST_DEADLINE);
        let client = Client::try_from(config).map_err(|err| ApiError::Refused(err.to_string()))?;
        Ok(Cluster {
            client,
            namespace: namespace.to_string(),
        })
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The `spec.config` of every NetworkAttachmentDefinition, with `namespace/name` for messages.
    pub async fn network_configs(&self) -> Result<Vec<(String, String)>, ApiError> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &nad_resource());
        let list = deadline("list NetworkAttachmentDefinitions", api.list(&ListParams::default())).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|nad| {
                let config = nad.data.get("spec")?.get("config")?.as_str()?.to_string();
                let name = format!(
                    "{}/{}",
                    nad.metadata.namespace.as_deref().unwrap_or_default(),
                    nad.metadata.name.as_deref().unwrap_or_default()
                );
                Some((name, config))
            })
            .collect())
    }

    /// This node's Node object (name and uid); `None` when it does not exist.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRef>, ApiError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node = deadline("get Node", api.get_opt(name)).await?;
        Ok(node.and_then(|n| {
            Some(NodeRef {
                name: n.metadata.name?,
                uid: n.metadata.uid?,
            })
        }))
    }

    /// Block Leases selected by `labels` (`roslan.io/node=robot-1`, `roslan.io/network=ros-lan`).
    pub async fn block_leases(&self, labels: &str) -> Result<Vec<HeldLease>, ApiError> {
        let list = deadline("list Leases", self.leases().list(&ListParams::default().labels(labels))).await?;
        Ok(list.items.iter().filter_map(held).collect())
    }

    /// Tries to lease `block` of `network` for `node`: a plain create, so that the API server decides a
    /// race between nodes.
    pub async fn create(&self, network: &str, block: IpNetwork, node: &NodeRef) -> Result<Created, ApiError> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let object = lease::new_lease(&self.namespace, network, block, node, now);
        match tokio::time::timeout(REQUEST_DEADLINE, self.leases().create(&PostParams::default(), &object)).await {
            Ok(Ok(created)) => held(&created)
                .map(Created::Leased)
                .ok_or_else(|| ApiError::Refused("the created Lease does not read back as a block".into())),
            Ok(Err(kube::Error::Api(status))) if status.is_already_exists() || status.is_conflict() => {
                Ok(Created::Taken)
            }
            Ok(Err(err)) => Err(classify(err)),
            Err(_) => Err(ApiError::Unreachable(format!(
                "create Lease: no answer within {} s",
                REQUEST_DEADLINE.as_secs()
            ))),
        }
    }

    /// Deletes the Lease of `block` of `network`, only if it is still the object `uid` names; a Lease
    /// that is already gone counts as deleted.
    pub async fn delete(&self, network: &str, block: IpNetwork, uid: Option<&str>) -> Result<(), ApiError> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = lease::lease_name(network, block);
        match tokio::time::timeout(REQUEST_DEADLINE, self.leases().delete(&name, &params)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(status))) if status.is_not_found() => Ok(()),
            Ok(Err(err)) => Err(classify(err)),
            Err(_) => Err(ApiError::Unreachable(format!(
                "delete Lease: no answer within {} s",
                REQUEST_DEADLINE.as_secs()
            ))),
        }
    }
}
