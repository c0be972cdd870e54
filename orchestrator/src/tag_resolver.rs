//! Resolving image tags to digests, once, when a release is created: a
//! `HEAD /v2/<repository>/manifests/<tag>` against the registry (Docker
//! Registry HTTP API v2), reading `Docker-Content-Digest`.

use std::time::Duration;

use sextant_protocol::deploy::ImageRef;

/// An image reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("empty image reference")]
    Empty,
    #[error("{image}: only sha256 digests are supported")]
    NotSha256 { image: String },
    #[error("{image}: a sha256 digest has 64 lowercase hex digits, after a repository")]
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

/// What a release names for a component: an image pinned by digest (the
/// deploy contract's [`ImageRef`]), or a tag still to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    Pinned(ImageRef),
    Tagged { repository: String, tag: String },
}

impl Named {
    fn parse(image: &str) -> Result<Self, ImageRefError> {
        let image = image.trim();
        if image.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if let Some((_, digest)) = image.rsplit_once('@') {
            if !digest.starts_with("sha256:") {
                return Err(ImageRefError::NotSha256 {
                    image: image.to_owned(),
                });
            }
            return ImageRef::parse(image).map(Self::Pinned).map_err(|_| {
                ImageRefError::DigestLength {
                    image: image.to_owned(),
                }
            });
        }
        // A tag follows the last ':' after the last '/' (a registry port
        // comes before the first '/').
        let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repository, tag) = match image[slash..].rfind(':') {
            Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
            None => (image, "latest"),
        };
        Ok(Self::Tagged {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// (registry host, path) of `repository`; a repository without a registry
/// host is refused (Sextant does not guess Docker Hub).
fn registry(repository: &str) -> Result<(&str, &str), NoRegistry> {
    match repository.split_once('/') {
        Some((host, path)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            Ok((host, path))
        }
        _ => Err(NoRegistry {
            repository: repository.to_owned(),
        }),
    }
}

/// Resolves `image` to `repository@sha256:…` (a pinned image is returned
/// as it is). `insecure` registries are reached over plain HTTP.
pub async fn resolve(
    http: &reqwest::Client,
    image: &str,
    insecure: bool,
) -> Result<(String, String, Option<String>), ResolveError> {
    let (repository, tag) = match Named::parse(image)? {
        Named::Pinned(pinned) => {
            return Ok((pinned.to_string(), pinned.digest, None));
        }
        Named::Tagged { repository, tag } => (repository, tag),
    };
    let (host, path) = registry(&repository)?;
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
    let pinned = format!("{repository}@{digest}");
    match Named::parse(&pinned)? {
        Named::Pinned(_) => Ok((pinned, digest, Some(tag))),
        Named::Tagged { .. } => Err(ImageRefError::NotSha256 { image: pinned }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_tag_and_digest() {
        let tagged = |repository: &str, tag: &str| Named::Tagged {
            repository: repository.into(),
            tag: tag.into(),
        };
        assert_eq!(
            Named::parse("127.0.0.1:5000/shop/web:v2").unwrap(),
            tagged("127.0.0.1:5000/shop/web", "v2")
        );
        assert_eq!(
            Named::parse("127.0.0.1:5000/web").unwrap(),
            tagged("127.0.0.1:5000/web", "latest")
        );
        let pinned = format!("reg.example/web@sha256:{}", "a".repeat(64));
        let Named::Pinned(image) = Named::parse(&pinned).unwrap() else {
            panic!("not pinned")
        };
        assert_eq!(image.digest, format!("sha256:{}", "a".repeat(64)));
        assert_eq!(image.to_string(), pinned);
        assert!(matches!(
            Named::parse("web@sha256:abc"),
            Err(ImageRefError::DigestLength { .. })
        ));
        assert!(matches!(
            Named::parse("web@md5:abc"),
            Err(ImageRefError::NotSha256 { .. })
        ));
        assert!(registry("web").is_err());
        assert!(registry("localhost/web").is_ok());
    }
}
