//! Resolving image tags to digests, once, when a release is created: a
//! `HEAD /v2/<repository>/manifests/<tag>` against the registry (Docker
//! Registry HTTP API v2), reading `Docker-Content-Digest`.

use std::time::Duration;

/// An image reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("empty image reference")]
    Empty,
    #[error("{image}: only sha256 digests are supported")]
    NotSha256 { image: String },
    #[error("{image}: a sha256 digest has 64 hex digits")]
    DigestLength { image: String },
}

/// A repository without a registry host, whose tags cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{repository}: name the registry (host[:port]/repository) so the tag can be resolved")]
pub struct NoRegistry {
    pub repository: String,
}

/// Why a tag could not be resolved to a digest.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Reference(#[from] ImageRefError),
    #[error(transparent)]
    NoRegistry(#[from] NoRegistry),
    /// The registry could not be asked; `insecure` is whether plain HTTP
    /// was allowed (the message hints at it when not).
    #[error("cannot resolve {image}: {url}: {}{}", causes(source), insecure_hint(*insecure))]
    Request {
        image: String,
        url: String,
        insecure: bool,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot resolve {image}: {url} answered {status}")]
    Status {
        image: String,
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("cannot resolve {image}: no Docker-Content-Digest header")]
    NoDigest { image: String },
}

/// The error and each of its causes, `a: b: c` (reqwest's message alone,
/// "error sending request", hides why).
fn causes(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

fn insecure_hint(insecure: bool) -> &'static str {
    if insecure {
        ""
    } else {
        " (a registry served over plain HTTP must be listed with --insecure-registry)"
    }
}

/// An image reference split into repository and tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry[:port]/path`
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<Self, ImageRefError> {
        let image = image.trim();
        if image.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if let Some((repository, digest)) = image.split_once('@') {
            let hex = digest
                .strip_prefix("sha256:")
                .ok_or_else(|| ImageRefError::NotSha256 {
                    image: image.to_owned(),
                })?;
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ImageRefError::DigestLength {
                    image: image.to_owned(),
                });
            }
            return Ok(Self {
                repository: repository.to_owned(),
                tag: None,
                digest: Some(digest.to_owned()),
            });
        }
        // A tag follows the last ':' after the last '/' (a registry port
        // comes before the first '/').
        let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
        match image[slash..].rfind(':') {
            Some(i) => Ok(Self {
                repository: image[..slash + i].to_owned(),
                tag: Some(image[slash + i + 1..].to_owned()),
                digest: None,
            }),
            None => Ok(Self {
                repository: image.to_owned(),
                tag: Some("latest".into()),
                digest: None,
            }),
        }
    }

    /// (registry host, path) of the repository; a reference without a
    /// registry host is refused (Sextant does not guess Docker Hub).
    fn registry(&self) -> Result<(&str, &str), NoRegistry> {
        match self.repository.split_once('/') {
            Some((host, path))
                if host.contains('.') || host.contains(':') || host == "localhost" =>
            {
                Ok((host, path))
            }
            _ => Err(NoRegistry {
                repository: self.repository.clone(),
            }),
        }
    }
}

/// Resolves `image` to `repository@sha256:…` (a pinned image is returned
/// as it is). `insecure` registries are reached over plain HTTP.
pub async fn resolve(
    http: &reqwest::Client,
    image: &str,
    insecure: bool,
) -> Result<(String, String, Option<String>), ResolveError> {
    let r = ImageRef::parse(image)?;
    if let Some(digest) = &r.digest {
        return Ok((format!("{}@{digest}", r.repository), digest.clone(), None));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let (host, path) = r.registry()?;
    let scheme = if insecure { "http" } else { "https" };
    let url = format!("{scheme}://{host}/v2/{path}/manifests/{tag}");
    let response = http
        .head(&url)
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|source| ResolveError::Request {
            image: image.to_owned(),
            url: url.clone(),
            insecure,
            source,
        })?;
    if !response.status().is_success() {
        return Err(ResolveError::Status {
            image: image.to_owned(),
            url,
            status: response.status(),
        });
    }
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ResolveError::NoDigest {
            image: image.to_owned(),
        })?
        .to_owned();
    ImageRef::parse(&format!("{}@{digest}", r.repository))?;
    Ok((format!("{}@{digest}", r.repository), digest, Some(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_tag_and_digest() {
        let r = ImageRef::parse("127.0.0.1:5000/shop/web:v2").unwrap();
        assert_eq!(r.repository, "127.0.0.1:5000/shop/web");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        let r = ImageRef::parse("127.0.0.1:5000/web").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let pinned = format!("reg.example/web@sha256:{}", "a".repeat(64));
        assert_eq!(
            ImageRef::parse(&pinned).unwrap().digest.unwrap(),
            format!("sha256:{}", "a".repeat(64))
        );
        assert!(ImageRef::parse("web@sha256:abc").is_err());
        assert!(ImageRef::parse("web:v1").unwrap().registry().is_err());
    }
}
