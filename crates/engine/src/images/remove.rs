//! Removing images: untag, rmi, prune, and start-up reconciliation.

use super::*;

impl ImageService {
    /// Remove one tag (or `name@digest`) reference; emits `untag`.
    pub(super) fn untag(&self, id: &Digest, tag: &str) -> Result<ImageDeleteResponseItem> {
        let mut b = Batch::default();
        if let Some(mut rec) = self.get_raw(id)? {
            rec.repo_tags.retain(|t| t != tag);
            rec.repo_digests.retain(|t| t != tag);
            // Repo digests of a repository that has no tag left go with the last tag.
            let repos: HashSet<String> = rec
                .repo_tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok().map(|r| r.familiar_name()))
                .collect();
            rec.repo_digests.retain(|d| {
                d.split_once('@')
                    .is_some_and(|(n, _)| repos.contains(n) || !rec.repo_tags.is_empty())
            });
            b.put(IMAGES_TABLE, id.hex(), &rec)?;
        }
        b.delete(TAGS_TABLE, tag);
        self.db.write(b)?;
        self.emit("untag", id, tag);
        Ok(ImageDeleteResponseItem {
            untagged: Some(tag.to_string()),
            deleted: None,
        })
    }

    /// Delete an image record with its config blob, and the layers (blobs and dirs) no other
    /// image uses. Returns the response items and the bytes of layers removed. With
    /// `keep_files` (a forced delete while a stopped container still uses the image), the blobs
    /// and layer dirs stay for that container.
    pub(super) fn delete_image(
        &self,
        rec: &ImageRecord,
        keep_files: bool,
    ) -> Result<(Vec<ImageDeleteResponseItem>, u64)> {
        let others: Vec<ImageRecord> = self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.id != rec.id)
            .collect();
        let used_chains: HashSet<&Digest> = others
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| &l.chain_id))
            .collect();
        let used_blobs: HashSet<&Digest> = others
            .iter()
            .flat_map(|r| r.layers.iter().filter_map(|l| l.blob.as_ref()))
            .collect();
        let mut b = Batch::default();
        b.delete(IMAGES_TABLE, rec.id.hex());
        b.delete(TAG_TIMES_TABLE, rec.id.hex());
        for t in &rec.repo_tags {
            b.delete(TAGS_TABLE, t);
        }
        self.db.write(b)?;
        // Files after the record: a crash in between leaves orphans that reconcile removes.
        let mut items = vec![ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(rec.id.to_string()),
        }];
        let mut reclaimed = 0;
        if keep_files {
            self.emit("delete", &rec.id, &rec.id.to_string());
            return Ok((items, 0));
        }
        self.content.delete(&rec.id)?;
        for l in rec.layers.iter().rev() {
            if let Some(blob) = &l.blob {
                if !used_blobs.contains(blob) {
                    self.content.delete(blob)?;
                }
            }
            if !used_chains.contains(&l.chain_id) && self.layers.exists(&l.chain_id) {
                self.layers.remove(&l.chain_id)?;
                reclaimed += l.size;
                items.push(ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(l.chain_id.to_string()),
                });
            }
        }
        self.emit("delete", &rec.id, &rec.id.to_string());
        Ok((items, reclaimed))
    }

    pub(super) fn has_children(&self, id: &Digest) -> Result<bool> {
        Ok(self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .iter()
            .any(|(_, r)| r.parent.as_ref() == Some(id)))
    }

    /// `docker rmi`: untag when `name` is a tag and other tags remain; delete otherwise.
    /// `in_use(id)` returns the id of a container using the image: refuse with 409 ("conflict:
    /// unable to delete <short> (must be forced) - image is being used by stopped container <short>"
    /// or "... cannot delete ... running container") unless `force` (force never removes an image
    /// used by a running container). Removes layers no other image uses. Emits untag/delete.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&Digest) -> Option<(String, bool)>,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        let _g = write_lock();
        let (rec, via_ref) = self.resolve_with_tag(name)?;
        let id = rec.id.clone();
        let short = |s: &str| s.chars().take(12).collect::<String>();
        let mut items = Vec::new();
        let user = in_use(&id);
        let refs = rec.repo_tags.len() + rec.repo_digests.len();
        let quiet;
        if let Some(tag) = via_ref {
            if let Some((cid, _)) = &user {
                if !force && refs == 1 {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        short(cid),
                        id.short()
                    )));
                }
            }
            items.push(self.untag(&id, &tag)?);
            // The untag may also have dropped the repository's digests (its last tag went).
            let after = self.get_raw(&id)?;
            let left = after
                .as_ref()
                .map(|r| r.repo_tags.len() + r.repo_digests.len())
                .unwrap_or(0);
            if left > 0 {
                return Ok(items);
            }
            for d in rec.repo_digests.iter().filter(|d| **d != tag) {
                items.push(ImageDeleteResponseItem {
                    untagged: Some(d.clone()),
                    deleted: None,
                });
            }
            quiet = true;
        } else {
            quiet = false;
            // By id: with at most one tag the tags go with the image.
            if rec.repo_tags.len() <= 1 {
                if let Some((cid, running)) = &user {
                    if *running {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                            id.short(),
                            short(cid)
                        )));
                    }
                    if !force {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                            id.short(),
                            short(cid)
                        )));
                    }
                }
                if !self.has_children(&id)? {
                    for t in rec.repo_tags.iter().chain(rec.repo_digests.iter()) {
                        items.push(self.untag(&id, t)?);
                    }
                }
            }
        }
        let rec = self.get(&id)?.ok_or_else(|| not_found(name))?;
        // Conflicts of the image itself (hard ones cannot be forced).
        let conflict = if self.has_children(&id)? {
            Some((true, "image has dependent child images".to_string(), false))
        } else if let Some((cid, true)) = &user {
            Some((
                true,
                format!("image is being used by running container {}", short(cid)),
                true,
            ))
        } else if !force && !rec.repo_tags.is_empty() {
            let what = if rec.repo_tags.len() > 1 {
                "image is referenced in multiple repositories"
            } else {
                "image is referenced in one or more repositories"
            };
            Some((false, what.to_string(), false))
        } else if let (false, Some((cid, false))) = (force, &user) {
            Some((
                false,
                format!("image is being used by stopped container {}", short(cid)),
                true,
            ))
        } else {
            None
        };
        if let Some((hard, msg, used)) = conflict {
            let dangling = rec.repo_tags.is_empty() && !self.has_children(&id)?;
            if quiet && (!dangling || used) {
                return Ok(items);
            }
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} ({}) - {msg}",
                id.short(),
                if hard {
                    "cannot be forced"
                } else {
                    "must be forced"
                }
            )));
        }
        for t in &rec.repo_tags {
            items.push(self.untag(&id, t)?);
        }
        let (deleted, _) = self.delete_image(&rec, user.is_some())?;
        items.extend(deleted);
        // Parents left dangling and unused go too (Docker's default prune of rmi).
        let mut parent = rec.parent.clone();
        while let Some(p) = parent.take() {
            let Some(prec) = self.get(&p)? else { break };
            if !prec.repo_tags.is_empty() || in_use(&p).is_some() || self.has_children(&p)? {
                break;
            }
            let (deleted, _) = self.delete_image(&prec, false)?;
            items.extend(deleted);
            parent = prec.parent.clone();
        }
        Ok(items)
    }

    /// `docker image prune` (`all` = also unused tagged images). Returns deleted items and bytes.
    pub fn prune(
        &self,
        all: bool,
        in_use: &dyn Fn(&Digest) -> bool,
    ) -> Result<(Vec<ImageDeleteResponseItem>, u64)> {
        let _g = write_lock();
        let mut items = Vec::new();
        let mut reclaimed = 0;
        // Repeat: deleting a child can leave its parent prunable.
        loop {
            let images = self.all()?;
            let parents = Self::parents(&images);
            let victims: Vec<ImageRecord> = images
                .into_iter()
                .filter(|r| {
                    (all || r.repo_tags.is_empty()) && !parents.contains(&r.id) && !in_use(&r.id)
                })
                .collect();
            if victims.is_empty() {
                break;
            }
            for rec in victims {
                for t in &rec.repo_tags {
                    items.push(self.untag(&rec.id, t)?);
                }
                let (deleted, bytes) = self.delete_image(&rec, false)?;
                items.extend(deleted);
                reclaimed += bytes;
            }
        }
        Ok((items, reclaimed))
    }

    /// Start-up reconciliation: clean partial blobs and layers, drop tags that point to missing
    /// images, and layers no image references.
    pub fn reconcile(&self) -> Result<()> {
        self.reconcile_keeping(&HashSet::new())
    }

    /// [`Self::reconcile`], sparing the layers in `keep` (chain ids that containers still mount
    /// although their image was force-removed).
    pub fn reconcile_keeping(&self, keep: &HashSet<Digest>) -> Result<()> {
        let _g = write_lock();
        self.content.clean_partial()?;
        self.layers.clean_partial()?;
        if self.tmp_dir.is_dir() {
            berth_store::atomic::clean_temp(&self.tmp_dir)?;
        }
        let images: HashMap<Digest, ImageRecord> = self
            .db
            .list::<ImageRecord>(IMAGES_TABLE)?
            .into_iter()
            .map(|(_, r)| (r.id.clone(), r))
            .collect();
        let mut b = Batch::default();
        let mut stale = 0;
        for (tag, id) in self.tag_map()? {
            if !images.contains_key(&id) {
                b.delete(TAGS_TABLE, &tag);
                stale += 1;
            }
        }
        if stale > 0 {
            tracing::info!(stale, "dropping tags of missing images");
            self.db.write(b)?;
        }
        let used: HashSet<&Digest> = images
            .values()
            .flat_map(|r| r.layers.iter().map(|l| &l.chain_id))
            .chain(keep.iter())
            .collect();
        for l in self.layers.list()? {
            if !used.contains(&l.chain_id) {
                tracing::info!(chain_id = %l.chain_id, "removing unreferenced layer");
                self.layers.remove(&l.chain_id)?;
            }
        }
        // Blobs no image references: stored by an import or load that was interrupted before
        // it recorded its image (blobs are written first, the record last).
        let used_blobs: HashSet<&Digest> = images
            .values()
            .flat_map(|r| {
                r.layers
                    .iter()
                    .filter_map(|l| l.blob.as_ref())
                    .chain(std::iter::once(&r.id))
            })
            .collect();
        for d in self.content.list()? {
            if !used_blobs.contains(&d) {
                tracing::info!(blob = %d, "removing unreferenced blob");
                self.content.delete(&d)?;
            }
        }
        Ok(())
    }
}
