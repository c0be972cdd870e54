//! [`HubClient`]: one method per endpoint, bearer-token auth, timeouts and
//! a cap on what it reads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use sextant_model::{
    Comparison, DoraReport, EnvironmentItem, ErrorBody, HistoryEntry, HostDeployment, HostSummary,
    Page, Rollout, TargetSummary,
};

use super::error::HubError;
use super::query::{
    CompareQuery, DoraQuery, DriftQuery, HistoryQuery, HostsQuery, PageRequest, Pairs,
    RolloutQuery, StateFilter,
};
use crate::Secret;

/// How long a request may take, unless the builder says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take, unless the builder says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read, unless the builder says otherwise. A compare
/// of three environments at 10,000 hosts × 100 workloads is 1.4 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// Headers added to every request, computed when it is sent (a trace
/// context, for one).
type HeaderSource = Arc<dyn Fn() -> HeaderMap + Send + Sync>;

/// A client of the hub's read API. Cheap to clone. The hub derives the
/// tenant from the bearer token, or uses `default` when it has no tokens.
#[derive(Clone)]
pub struct HubClient {
    /// Without a trailing slash.
    base_url: String,
    token: Option<Secret>,
    http: reqwest::Client,
    timeout: Duration,
    max_body_bytes: usize,
    headers: Option<HeaderSource>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Builds a [`HubClient`].
#[must_use]
pub struct HubClientBuilder {
    base_url: String,
    token: Option<Secret>,
    timeout: Duration,
    connect_timeout: Duration,
    max_body_bytes: usize,
    headers: Option<HeaderSource>,
    http: Option<reqwest::Client>,
}

impl HubClientBuilder {
    /// The bearer token, with the `read` scope, when the hub has tokens.
    /// An empty token counts as none.
    pub fn token(mut self, token: Option<Secret>) -> Self {
        self.token = token.filter(|t| !t.expose().is_empty());
        self
    }

    /// How long one request may take, answer included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (default 10 s); not used with
    /// [`HubClientBuilder::http_client`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest answer read (default 64 MiB); a larger one is
    /// [`HubError::TooLarge`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Headers to add to every request, computed as it is sent: the
    /// orchestrator passes its trace context
    /// (`sextant_exporters::telemetry::current_headers`).
    pub fn headers(mut self, headers: impl Fn() -> HeaderMap + Send + Sync + 'static) -> Self {
        self.headers = Some(Arc::new(headers));
        self
    }

    /// A `reqwest` client of the caller's (its own TLS roots, a proxy)
    /// instead of one built here. The timeout still applies per request.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn build(self) -> Result<HubClient, HubError> {
        let base_url = self.base_url.trim_end_matches('/').to_owned();
        let invalid = |reason: String| HubError::Url {
            url: base_url.clone(),
            reason,
        };
        let url = url::Url::parse(&base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it must be an address with no query".into()));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .build()
                .map_err(HubError::Client)?,
        };
        Ok(HubClient {
            base_url,
            token: self.token,
            http,
            timeout: self.timeout,
            max_body_bytes: self.max_body_bytes,
            headers: self.headers,
        })
    }
}

impl HubClient {
    /// A client of the hub's API at `base_url` (`http://127.0.0.1:8080`)
    /// with the default timeouts.
    pub fn new(base_url: impl Into<String>, token: Option<Secret>) -> Result<Self, HubError> {
        Self::builder(base_url).token(token).build()
    }

    pub fn builder(base_url: impl Into<String>) -> HubClientBuilder {
        HubClientBuilder {
            base_url: base_url.into(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            headers: None,
            http: None,
        }
    }

    /// The hub's address, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /api/v1/environments`: one page of the environments, in the
    /// hub's configured order.
    pub async fn environments(
        &self,
        page: &PageRequest,
    ) -> Result<Page<EnvironmentItem>, HubError> {
        let mut pairs = Pairs::new();
        page.push_to(&mut pairs);
        self.get(&["environments"], &pairs).await
    }

    /// Every environment, following the pages.
    pub async fn all_environments(&self) -> Result<Vec<EnvironmentItem>, HubError> {
        every(|page| async move { self.environments(&page).await }).await
    }

    /// `GET /api/v1/environments/{environment}/state`: every target of the
    /// environment with its desired version and its hosts grouped by
    /// version and status.
    pub async fn environment_state(
        &self,
        environment: &str,
        filter: &StateFilter,
    ) -> Result<Vec<TargetSummary>, HubError> {
        self.get(&["environments", environment, "state"], &filter.pairs())
            .await
    }

    /// `GET /api/v1/compare`: one page of workloads compared across the
    /// environments.
    pub async fn compare(
        &self,
        query: &CompareQuery,
        page: &PageRequest,
    ) -> Result<Comparison, HubError> {
        self.get(&["compare"], &query.pairs(page)).await
    }

    /// Every workload compared, following the pages; `next_cursor` is
    /// null.
    pub async fn compare_all(&self, query: &CompareQuery) -> Result<Comparison, HubError> {
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        let mut all = self.compare(query, &page).await?;
        while let Some(cursor) = all.next_cursor.take() {
            page.cursor = Some(cursor);
            let mut more = self.compare(query, &page).await?;
            all.workloads.append(&mut more.workloads);
            all.next_cursor = more.next_cursor;
        }
        Ok(all)
    }

    /// `GET /api/v1/drift`: one page of the (host, target) rows off their
    /// desired state.
    pub async fn drift(
        &self,
        query: &DriftQuery,
        page: &PageRequest,
    ) -> Result<Page<HostDeployment>, HubError> {
        self.get(&["drift"], &query.pairs(page)).await
    }

    /// Every drifting row, following the pages.
    pub async fn all_drift(&self, query: &DriftQuery) -> Result<Vec<HostDeployment>, HubError> {
        every(|page| async move { self.drift(query, &page).await }).await
    }

    /// `GET /api/v1/history`: one page of desired assignments and observed
    /// status changes, newest first.
    pub async fn history(
        &self,
        query: &HistoryQuery,
        page: &PageRequest,
    ) -> Result<Page<HistoryEntry>, HubError> {
        self.get(&["history"], &query.pairs(page)).await
    }

    /// `GET /api/v1/insights/dora`: DORA's five metrics over a window.
    pub async fn dora(&self, query: &DoraQuery) -> Result<DoraReport, HubError> {
        self.get(&["insights", "dora"], &query.pairs()).await
    }

    /// `GET /api/v1/hosts`: one page of hosts with when they last reported.
    pub async fn hosts(
        &self,
        query: &HostsQuery,
        page: &PageRequest,
    ) -> Result<Page<HostSummary>, HubError> {
        self.get(&["hosts"], &query.pairs(page)).await
    }

    /// Every host, following the pages.
    pub async fn all_hosts(&self, query: &HostsQuery) -> Result<Vec<HostSummary>, HubError> {
        every(|page| async move { self.hosts(query, &page).await }).await
    }

    /// `GET /api/v1/rollout`: a workload's rollout in an environment. A
    /// workload the environment does not have is the hub's 404
    /// `not_found` ([`HubError::is_not_found`], [`super::Found`]).
    pub async fn rollout(&self, query: &RolloutQuery) -> Result<Rollout, HubError> {
        self.get(&["rollout"], &query.pairs()).await
    }

    /// GETs `/api/v1/{segments…}` with `pairs` and decodes the answer.
    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        pairs: &Pairs,
    ) -> Result<T, HubError> {
        let mut url = url::Url::parse(&self.base_url).map_err(|e| HubError::Url {
            url: self.base_url.clone(),
            reason: e.to_string(),
        })?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !pairs.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let shown = url.to_string();
        let mut request = self.http.get(url).timeout(self.timeout);
        if let Some(headers) = &self.headers {
            request = request.headers(headers());
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let transport = |source| HubError::Transport {
            url: shown.clone(),
            source,
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(HubError::TooLarge {
                    url: shown,
                    limit: self.max_body_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(HubError::Status {
                error: serde_json::from_slice::<ErrorBody>(&body)
                    .ok()
                    .map(|b| b.error),
                body: String::from_utf8_lossy(&body).into_owned(),
                url: shown,
                status,
            });
        }
        serde_json::from_slice(&body).map_err(|source| HubError::Decode {
            url: shown,
            status,
            source,
        })
    }
}

/// Every item of a list, asking for the largest pages and following
/// `next_cursor`.
async fn every<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, HubError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, HubError>>,
{
    let mut items = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let mut answer = fetch(page.clone()).await?;
        items.append(&mut answer.items);
        match answer.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_token() {
        let hub =
            HubClient::new("http://127.0.0.1:8080/", Some(Secret::new("s3cr3t"))).expect("client");
        let shown = format!("{hub:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
        assert_eq!(hub.base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn only_http_addresses_are_hubs() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://hub",
            "http://hub/?a=b",
            "not a url",
        ] {
            assert!(
                matches!(HubClient::new(bad, None), Err(HubError::Url { .. })),
                "{bad}"
            );
        }
        let empty = HubClient::builder("http://hub")
            .token(Some(Secret::new("")))
            .build()
            .expect("client");
        assert!(empty.token.is_none());
    }
}
