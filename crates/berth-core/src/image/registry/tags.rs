//! `docker pull --all-tags` (`POST /images/create` with an empty tag and a
//! name without one): every tag the repository lists, pulled one after
//! the other as single pulls, as dockerd does. The tag list is read in
//! pages and capped, so a registry cannot make a pull without end.

use std::sync::Arc;

use oci_client::RegistryOperation;

use super::pull::{PullRequest, Pulled};
use super::session::Session;
use super::{Progress, RegistryError, Target};
use crate::image::ImageService;

/// Tags read per page of the tag list.
const PAGE: usize = 1000;
/// Most tags one `--all-tags` pull takes.
const MAX_TAGS: usize = 10_000;

impl ImageService {
    /// Pulls every tag of `req.reference`'s repository, in the order the
    /// registry lists them.
    pub async fn pull_all_tags(
        self: &Arc<Self>,
        req: PullRequest,
        progress: &Progress,
    ) -> Result<Vec<Pulled>, RegistryError> {
        let tags = self.list_tags(&req).await?;
        let mut pulled = Vec::new();
        for tag in tags {
            let one = PullRequest {
                reference: req.reference.with_target(Target::Tag(tag)),
                ..req.clone()
            };
            pulled.push(self.pull(one, progress).await?);
        }
        Ok(pulled)
    }

    /// The repository's tags (its registry's `/tags/list`, page by page).
    async fn list_tags(&self, req: &PullRequest) -> Result<Vec<String>, RegistryError> {
        let session = Session::open(
            &self.registry,
            &req.reference,
            &req.credentials,
            RegistryOperation::Pull,
        )
        .await?;
        let url = format!("{}{}/tags/list", session.base_url(), session.path());
        let auth = req.credentials.to_oci();
        let name = req.reference.familiar_name();
        let mut tags: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = session
                .client
                .list_tags(&session.repo, &auth, Some(PAGE), last.as_deref())
                .await
                .map_err(|e| RegistryError::from_oci(e, "Get", &url))?;
            let next = page.tags.last().cloned();
            let full = page.tags.len() >= PAGE;
            // A name the reference grammar refuses is no tag to pull.
            let valid = |t: &String| crate::image::Reference::from_parts(&name, t).is_ok();
            tags.extend(page.tags.into_iter().filter(valid));
            if !full || tags.len() >= MAX_TAGS || next.is_none() || next == last {
                break;
            }
            last = next;
        }
        tags.truncate(MAX_TAGS);
        if tags.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "repository {} has no tags",
                req.reference.familiar_name()
            )));
        }
        Ok(tags)
    }
}
