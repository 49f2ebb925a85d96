//! Bounded concurrency over hosts: at most `forks` at once, results in input order, a
//! panicking host task reported as that host's failure rather than taking the run down.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::stop::Stop;

/// Runs `f` for every host with at most `forks` at once; results in input order.
pub(super) async fn run_parallel<T, F, Fut>(
    forks: usize,
    hosts: Vec<String>,
    f: F,
) -> Vec<(String, Result<T, Stop>)>
where
    T: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, Stop>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(forks.max(1)));
    let mut set = JoinSet::new();
    for (i, host) in hosts.iter().enumerate() {
        let fut = f(host.clone());
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut results: Vec<Option<Result<T, Stop>>> = hosts.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => results[i] = Some(r),
            Err(e) => {
                // A panicking host task must not take the run down; it shows as a failure.
                tracing::error!("a host task panicked: {e}");
            }
        }
    }
    hosts
        .into_iter()
        .zip(results)
        .map(|(h, r)| {
            let r = r.unwrap_or_else(|| Err(Stop::Panicked { host: h.clone() }));
            (h, r)
        })
        .collect()
}
