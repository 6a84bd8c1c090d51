//! gRPC `users.status.UserStatusService` (the user online status design) and server reflection, served by tonic
//! on the HTTP port: the accept loop sends every request whose content-type is
//! `application/grpc*` here ([`GrpcRouter::serve`]), over h2c. Errors are gRPC status codes
//! whose message starts with the user online status design's error code (`INVALID_STATUS: ...`), also sent as
//! the `x-error-code` trailer metadata.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{stream, Stream, StreamExt};
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tonic::codegen::Service;
use tonic::{Code, Status};

use super::{parse_id, sse, Error, Msg, Presence, Snapshot, Status as Presence_};
use crate::http::response::{self, Reply};

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("users.status");
}

/// The encoded descriptor set of `proto/users/status.proto`, served by reflection.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/users_status_descriptor.bin"));

use pb::user_status_service_server::{UserStatusService, UserStatusServiceServer};

type BoxFut = Pin<Box<dyn std::future::Future<Output = http::Response<tonic::body::Body>> + Send>>;
type ReflectionFn = Box<dyn Fn(Request<Incoming>) -> BoxFut + Send + Sync>;

/// Routes a gRPC request by path to the status service or a reflection service.
pub struct GrpcRouter {
    status: UserStatusServiceServer<Grpc>,
    reflection_v1: ReflectionFn,
    reflection_v1alpha: ReflectionFn,
}

impl std::fmt::Debug for GrpcRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcRouter")
    }
}

fn boxed<S>(svc: S) -> ReflectionFn
where
    S: Service<Request<Incoming>, Response = http::Response<tonic::body::Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Box::new(move |req| {
        let mut s = svc.clone();
        Box::pin(async move {
            match s.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    })
}

impl GrpcRouter {
    /// # Errors
    /// The embedded descriptor set does not decode (a build bug).
    pub fn new(presence: Arc<Presence>) -> anyhow::Result<GrpcRouter> {
        let v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
            .build_v1()?;
        let v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
            .build_v1alpha()?;
        Ok(GrpcRouter {
            status: UserStatusServiceServer::new(Grpc { presence }),
            reflection_v1: boxed(v1),
            reflection_v1alpha: boxed(v1alpha),
        })
    }

    /// Serves one gRPC call; an unknown service or method answers UNIMPLEMENTED.
    pub async fn serve(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path();
        let (svc, resp) = if path.starts_with("/users.status.UserStatusService/") {
            let mut s = self.status.clone();
            (
                "UserStatusService",
                match s.call(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
            )
        } else if path.starts_with("/grpc.reflection.v1.ServerReflection/") {
            ("ServerReflection", (self.reflection_v1)(req).await)
        } else if path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") {
            ("ServerReflection", (self.reflection_v1alpha)(req).await)
        } else {
            ("unknown", Status::unimplemented("no such gRPC service").into_http())
        };
        metrics::counter!("grpc_requests_total", "service" => svc).increment(1);
        response::stream(resp.map(|b| b.map_err(|s| Box::new(s) as response::BoxError).boxed_unsync()))
    }
}

/// Is this request gRPC? (`content-type: application/grpc`, `application/grpc+proto`, ...)
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let (code, tag) = match &e {
            Error::Invalid { code, .. } => (Code::InvalidArgument, *code),
            Error::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHORIZED"),
            Error::Forbidden => (Code::PermissionDenied, "UNAUTHORIZED"),
            Error::RedisDown | Error::Timeout(_) | Error::Redis(_) => (Code::Unavailable, "REDIS_ERROR"),
        };
        if let Error::Redis(r) = &e {
            tracing::warn!(error = %r, "presence redis call failed");
        }
        let message = match &e {
            Error::Redis(_) => format!("{tag}: redis operation failed"),
            _ => format!("{tag}: {e}"),
        };
        let mut s = Status::new(code, message);
        s.metadata_mut().insert("x-error-code", tonic::metadata::MetadataValue::from_static(tag));
        s
    }
}

fn to_pb_status(s: Presence_) -> pb::UserStatus {
    match s {
        Presence_::Unknown => pb::UserStatus::Unknown,
        Presence_::Online => pb::UserStatus::Online,
        Presence_::Away => pb::UserStatus::Away,
        Presence_::Offline => pb::UserStatus::Offline,
    }
}

fn data(id: &str, s: &Snapshot, now_s: i64) -> pb::UserStatusData {
    pb::UserStatusData {
        user_id: id.to_owned(),
        status: to_pb_status(s.status) as i32,
        last_seen: s.last_seen_ms / 1000,
        timestamp: now_s,
    }
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The service implementation; state is the worker's presence service.
pub struct Grpc {
    presence: Arc<Presence>,
}

impl Grpc {
    fn authorize<T>(&self, req: &tonic::Request<T>, user: &str) -> Result<(), Status> {
        let auth = req.metadata().get("authorization").map(|v| v.as_bytes());
        Ok(self.presence.authorize(auth, user)?)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StatusUpdateEvent, Status>> + Send>>;

#[tonic::async_trait]
impl UserStatusService for Grpc {
    async fn set_user_status(
        &self,
        req: tonic::Request<pb::SetUserStatusRequest>,
    ) -> Result<tonic::Response<pb::SetUserStatusResponse>, Status> {
        let id = parse_id(&req.get_ref().user_id)?;
        let status = match pb::UserStatus::try_from(req.get_ref().status) {
            Ok(pb::UserStatus::Online) => Presence_::Online,
            Ok(pb::UserStatus::Away) => Presence_::Away,
            Ok(pb::UserStatus::Offline) => Presence_::Offline,
            _ => return Err(Error::invalid("INVALID_STATUS", "status must be ONLINE, AWAY or OFFLINE").into()),
        };
        self.authorize(&req, id)?;
        let now = self.presence.store.set(id, status).await?;
        let snap = Snapshot { status, last_seen_ms: now };
        Ok(tonic::Response::new(pb::SetUserStatusResponse {
            success: true,
            message: format!("status set to {}", status.name()),
            data: Some(data(id, &snap, now / 1000)),
        }))
    }

    async fn get_user_status(
        &self,
        req: tonic::Request<pb::GetUserStatusRequest>,
    ) -> Result<tonic::Response<pb::GetUserStatusResponse>, Status> {
        let id = parse_id(&req.get_ref().user_id)?;
        let snap = self.presence.store.snapshot(&[id]).await?;
        Ok(tonic::Response::new(pb::GetUserStatusResponse { success: true, data: Some(data(id, &snap[0], now_s())) }))
    }

    async fn get_multiple_user_status(
        &self,
        req: tonic::Request<pb::GetMultipleUserStatusRequest>,
    ) -> Result<tonic::Response<pb::GetMultipleUserStatusResponse>, Status> {
        let ids = &req.get_ref().user_ids;
        let max = self.presence.max_batch;
        if ids.len() > max {
            return Err(Error::invalid("TOO_MANY_IDS", format!("at most {max} user_ids per request")).into());
        }
        let ids = ids.iter().map(|s| parse_id(s)).collect::<Result<Vec<&str>, _>>()?;
        let snaps = self.presence.store.snapshot(&ids).await?;
        let now = now_s();
        let data = ids.iter().zip(&snaps).map(|(id, s)| data(id, s, now)).collect();
        Ok(tonic::Response::new(pb::GetMultipleUserStatusResponse { success: true, data }))
    }

    async fn send_heartbeat(
        &self,
        req: tonic::Request<pb::SendHeartbeatRequest>,
    ) -> Result<tonic::Response<pb::SendHeartbeatResponse>, Status> {
        let id = parse_id(&req.get_ref().user_id)?;
        self.authorize(&req, id)?;
        self.presence.store.heartbeat(id).await?;
        metrics::counter!("presence_heartbeats_total").increment(1);
        Ok(tonic::Response::new(pb::SendHeartbeatResponse {
            success: true,
            next_heartbeat_in_seconds: self.presence.heartbeat_interval_s,
        }))
    }

    type SubscribeStatusUpdatesStream = EventStream;

    /// The watched users' current statuses first (timestamp = last activity), then every
    /// change. Ends with UNAVAILABLE (`REDIS_ERROR`) if the event channel is lost and
    /// RESOURCE_EXHAUSTED (`SLOW_CONSUMER`) if the client falls behind; at shutdown, OK.
    async fn subscribe_status_updates(
        &self,
        req: tonic::Request<pb::SubscribeStatusUpdatesRequest>,
    ) -> Result<tonic::Response<EventStream>, Status> {
        let r = req.get_ref();
        if !r.user_id.is_empty() {
            parse_id(&r.user_id)?;
        }
        let p = &self.presence;
        let mut ids = Vec::with_capacity(r.watch_user_ids.len());
        for id in &r.watch_user_ids {
            ids.push(Box::<str>::from(parse_id(id)?));
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(Error::invalid("MISSING_WATCH", "watch_user_ids is required").into());
        }
        if ids.len() > p.max_watch {
            return Err(Error::invalid("TOO_MANY_IDS", format!("at most {} watched ids", p.max_watch)).into());
        }
        let (sub, snap) = sse::open(p, ids).await?;
        let initial: Vec<Result<pb::StatusUpdateEvent, Status>> = sub
            .watched()
            .iter()
            .zip(&snap)
            .map(|(id, s)| {
                Ok(pb::StatusUpdateEvent {
                    user_id: id.to_string(),
                    status: to_pb_status(s.status) as i32,
                    timestamp: s.last_seen_ms / 1000,
                })
            })
            .collect();
        let shutdown = p.shutdown.clone();
        let live = stream::unfold(Some(sub), move |sub| {
            let shutdown = shutdown.clone();
            async move {
                let mut sub = sub?;
                let item = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return None,
                    _ = sub.lagged.notified() => {
                        return Some((Err(Status::resource_exhausted("SLOW_CONSUMER: subscriber fell behind; resubscribe")), None));
                    }
                    m = sub.rx.recv() => m,
                };
                match item {
                    Some(Msg::Event(e)) => Some((
                        Ok(pb::StatusUpdateEvent {
                            user_id: e.user_id.to_string(),
                            status: to_pb_status(e.status) as i32,
                            timestamp: e.at_ms / 1000,
                        }),
                        Some(sub),
                    )),
                    Some(Msg::Lost) | None => {
                        Some((Err(Status::unavailable("REDIS_ERROR: presence events interrupted; resubscribe")), None))
                    }
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(stream::iter(initial).chain(live))))
    }
}
