//! Disk usage of containers and images, as `system df` and the list calls
//! with `size` / `shared-size` report it (moby `daemon/disk_usage.go`):
//! a container's writable layer (`SizeRw`) and that plus its image
//! (`SizeRootFs`); an image's layers shared with other images
//! (`SharedSize`) and the containers using it; the layers' total, each
//! stored layer once (`LayersSize`).

use std::collections::HashMap;

use super::{ContainerError, ContainerRecord, ContainerService};
use crate::store::ImageRecord;
use crate::volume::Filters;

/// One container with the sizes of its file system.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub record: ContainerRecord,
    /// Bytes in the writable layer (what the container changed).
    pub size_rw: i64,
    /// `size_rw` plus the image's size.
    pub size_root_fs: i64,
}

/// One image with what it shares and who uses it.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    pub image: ImageRecord,
    /// Bytes of its layers that other images use too.
    pub shared_size: i64,
    /// Containers (any state) made from it.
    pub containers: i64,
}

/// The images and containers part of `system df`.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Every stored layer once.
    pub layers_size: i64,
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
}

impl ContainerService {
    /// The sizes of one container's file system. The writable layer is
    /// measured by walking it (as Docker does); a missing one is 0.
    pub fn usage_of(&self, record: ContainerRecord) -> ContainerUsage {
        let image_size = self
            .store
            .get_image(&record.image_id)
            .ok()
            .flatten()
            .map_or(0, |i| i.size);
        self.usage_with(record, image_size)
    }

    /// [`ContainerService::usage_of`] with the image's size already known.
    fn usage_with(&self, record: ContainerRecord, image_size: i64) -> ContainerUsage {
        let upper = self.paths(&record.id).upper();
        let size_rw = crate::sys::usage::dir_size(&upper).map_or(0, |b| b as i64);
        ContainerUsage {
            record,
            size_rw,
            size_root_fs: image_size + size_rw,
        }
    }

    /// Images (with shared sizes and container counts) and, when
    /// `with_containers`, every container with its sizes.
    pub fn disk_usage(&self, with_containers: bool) -> Result<DiskUsage, ContainerError> {
        let records = self.list(true, &Filters::new())?;
        let images = self.images.list()?;
        // Image sizes from the list just read, not one query per container.
        let sizes: HashMap<String, i64> = images.iter().map(|i| (i.id.clone(), i.size)).collect();
        let (layers_size, images) = image_usage(images, &records);
        let containers = if with_containers {
            let size_of = |r: &ContainerRecord| sizes.get(&r.image_id).copied().unwrap_or(0);
            (records.into_iter())
                .map(|r| {
                    let image_size = size_of(&r);
                    self.usage_with(r, image_size)
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(DiskUsage {
            layers_size,
            images,
            containers,
        })
    }
}

/// Shared sizes and container counts of `images`, and the size of every
/// distinct layer once.
pub fn image_usage(
    images: Vec<ImageRecord>,
    containers: &[ContainerRecord],
) -> (i64, Vec<ImageUsage>) {
    let (layers_size, shared) = shared_sizes(&images);
    let mut users: HashMap<&str, i64> = HashMap::new();
    for c in containers {
        *users.entry(c.image_id.as_str()).or_default() += 1;
    }
    let usage = images
        .into_iter()
        .zip(shared)
        .map(|(image, shared_size)| ImageUsage {
            containers: users.get(image.id.as_str()).copied().unwrap_or(0),
            shared_size,
            image,
        })
        .collect();
    (layers_size, usage)
}

/// The size of every distinct layer once, and per image the bytes of its
/// layers that another image lists too (berth stores a layer once per
/// diff ID, whatever image brought it).
fn shared_sizes(images: &[ImageRecord]) -> (i64, Vec<i64>) {
    let mut layer_users: HashMap<&str, (i64, usize)> = HashMap::new();
    for image in images {
        for (diff_id, size) in &image.layers {
            layer_users.entry(diff_id).or_insert((*size, 0)).1 += 1;
        }
    }
    let layers_size = layer_users.values().map(|(size, _)| size).sum();
    let shared = images
        .iter()
        .map(|image| {
            (image.layers.iter())
                .filter(|(diff_id, _)| layer_users[diff_id.as_str()].1 > 1)
                .map(|(_, size)| size)
                .sum()
        })
        .collect();
    (layers_size, shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, layers: &[(&str, i64)]) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            config: Vec::new(),
            created_at: 0,
            size: layers.iter().map(|(_, s)| s).sum(),
            layers: layers.iter().map(|(d, s)| (d.to_string(), *s)).collect(),
            tags: Vec::new(),
            digests: Vec::new(),
        }
    }

    #[test]
    fn shared_layers_count_once_in_the_total_and_in_each_sharer() {
        let images = vec![
            image("a", &[("base", 100), ("app", 10)]),
            image("b", &[("base", 100), ("other", 5)]),
            image("c", &[("lone", 7)]),
        ];
        let (total, shared) = shared_sizes(&images);
        assert_eq!(total, 122);
        assert_eq!(shared, vec![100, 100, 0]);
    }
}
