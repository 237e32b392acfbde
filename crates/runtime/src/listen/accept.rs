//! The accept loop: connections up to the cap, and which one closes to make room.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// Serve `router` on `listener`, each connection through `handshake` and `http`, until
/// `shutdown` completes, then drain for at most `bounds.shutdown_grace`.
pub async fn serve<H: Handshake>(
    listener: tokio::net::TcpListener,
    handshake: H,
    http: auto::Builder<TokioExecutor>,
    bounds: &Bounds,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let max_busy = 2 * bounds.max_connections;
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    // The activity of each connection not yet told to close.
    let mut open: HashMap<tokio::task::Id, Activity> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.remove(&id);
            }
            _ = tokio::time::sleep(EVICT_TICK), if connections.len() >= max_busy => {
                while open.len() > bounds.max_connections && evict_one(&mut open, bounds.fresh_grace) {}
            }
            accepted = listener.accept(), if connections.len() < max_busy => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, typically: wait instead of spinning.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if open.len() >= bounds.max_connections {
                    evict_one(&mut open, bounds.fresh_grace);
                }
                let activity = Activity::new();
                let task = connections.spawn(connection(
                    stream,
                    activity.clone(),
                    handshake.clone(),
                    http.clone(),
                    router.clone(),
                    bounds.clone(),
                    stop_rx.clone(),
                ));
                open.insert(task.id(), activity);
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(bounds.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Where a connection stands in the order of closing to make room (lower first), or
/// `None` when it is not to be closed. `undecided`: some connection may yet turn out
/// stalled or silent ([`Standing::undecided`]), and would go before one in recent use.
pub(super) fn eviction_rank(
    standing: Standing,
    now: Instant,
    fresh_grace: Duration,
    undecided: bool,
) -> Option<(u8, bool, Instant)> {
    let at_least = |since: Instant, age: Duration| now.saturating_duration_since(since) >= age;
    match standing {
        Standing::Stalled(since) => Some((0, false, since)),
        Standing::Fresh { accepted, waited } if waited >= fresh_grace => Some((1, false, accepted)),
        Standing::Idle {
            since,
            recent: false,
            ..
        } if at_least(since, EVICT_IDLE) => Some((2, false, since)),
        // HTTP/2 first: its GOAWAY cannot cut a request the client is sending.
        Standing::Idle {
            since,
            recent: true,
            h2,
        } if at_least(since, EVICT_IDLE) && !undecided => Some((3, !h2, since)),
        _ => None,
    }
}

/// Tell the first connection in the order of [`eviction_rank`] to close. Returns whether
/// one was told.
fn evict_one(open: &mut HashMap<tokio::task::Id, Activity>, fresh_grace: Duration) -> bool {
    let now = Instant::now();
    let standings: Vec<_> = open.iter().map(|(id, a)| (*id, a.standing(now))).collect();
    let undecided = standings.iter().any(|(_, s)| s.undecided());
    let first = standings
        .into_iter()
        .filter_map(|(id, s)| eviction_rank(s, now, fresh_grace, undecided).map(|rank| (rank, id)))
        .min();
    let Some(activity) = first.and_then(|(_, id)| open.remove(&id)) else {
        return false;
    };
    // (A stored permit: it closes even if it was not waiting yet.)
    activity.evict.notify_one();
    true
}

async fn connection<H: Handshake>(
    stream: TcpStream,
    activity: Activity,
    handshake: H,
    http: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    bounds: Bounds,
    mut stop: watch::Receiver<bool>,
) {
    // The first-request timeout counts from the accept, handshake included. Not cut by
    // shutdown: a client whose connection was accepted is answered (the handshake is
    // bounded by the header timeout). Cut to make room for a new one, unless its client
    // is sending right now: then its first request is answered, and the connection
    // closed after it.
    // (Open for as long as this task runs: owned by the handshake, then the connection.)
    let fd = stream.as_raw_fd();
    let io = Watched::new(stream, &activity);
    let handshake = tokio::time::timeout(bounds.header_timeout, handshake.handshake(io));
    tokio::pin!(handshake);
    let mut evicted = false;
    let io = loop {
        tokio::select! {
            done = &mut handshake => match done {
                Ok(Ok(io)) => break io,
                _ => return,
            },
            _ = activity.evict.notified(), if !evicted => {
                if activity.drop_at_once(fd) {
                    return;
                }
                evicted = true;
            }
        }
    };
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (parts, body) = req.into_parts();
        let h2 = parts.version == hyper::Version::HTTP_2;
        let mut guard = tracker.begin(body.is_end_stream(), h2);
        let body = Tracked {
            inner: body,
            progress: guard.progress.clone(),
        };
        let req = hyper::Request::from_parts(parts, axum::body::Body::new(body));
        let call = router.clone().oneshot(req);
        async move {
            let response = call.await;
            guard.ok = response.as_ref().is_ok_and(|r| r.status().is_success());
            drop(guard);
            response
        }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Whether to close it gracefully rather than drop it. (The select only decides: the
    // watch's guard must not live across an await.)
    let graceful = evicted
        || tokio::select! {
            _ = &mut conn => return,
            _ = stop.wait_for(|s| *s) => true,
            // Nothing ever asked on it: dropped.
            served = activity.idle(bounds.header_timeout, bounds.idle_timeout) => served,
            // Its client sends nothing: no answer to wait for.
            _ = activity.evict.notified() => !activity.drop_at_once(fd),
        };
    if !graceful {
        return;
    }
    // A request its client has begun to send is let in first, so that it is answered
    // rather than cut: the first one (of a connection accepted just before the listener
    // closed, or told to close while its client was sending), or the next one on an
    // HTTP/1.1 connection, whose close the client cannot see coming (an HTTP/2 client
    // reads the GOAWAY first, and a request it sent before is still answered).
    let wait = bounds.header_timeout.min(Duration::from_secs(2));
    tokio::select! {
        _ = &mut conn => return,
        _ = tokio::time::timeout(wait, activity.arrivals(fd)) => {}
    }
    if !activity.lock().served_one {
        // Nothing ever asked on it: nothing to answer.
        return;
    }
    conn.as_mut().graceful_shutdown();
    // The close may wait for a request in flight; shutdown's grace bounds that, and a
    // request whose body stopped coming is not waited for.
    tokio::select! {
        _ = tokio::time::timeout(bounds.shutdown_grace, conn) => {}
        _ = activity.stalled() => {}
    }
}
