"""What translation adds to the adversarial losses of trainers/losses.py: the image-history buffer, the papers'
reconstruction terms and the linear learning-rate decay (reference: util/image_pool.py, cycle_gan_model.py,
pix2pix_model.py, networks.get_scheduler "linear")."""
from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    """Shrivastava et al.'s history of generated images: D learns from a mix of current and past fakes.

    While the pool is not full every image is stored and returned; then each image is, with probability 1/2,
    swapped for a random stored one (which is returned) or returned as is. Draws come from the trainer's
    checkpointed generator and the pool is part of the checkpoint, so a resumed run continues exactly.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        draws = torch.rand(len(images), generator=rng)
        picks = torch.randint(max(1, self.size), (len(images),), generator=rng)
        for image, draw, pick in zip(images.detach(), draws.tolist(), picks.tolist()):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif draw > 0.5:
                out.append(self.images[pick].clone())
                self.images[pick] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"images": torch.stack(self.images).cpu() if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [image.to(device) for image in state["images"]]


def linear_decay(step: int, steps: int, start: float) -> float:
    """The learning-rate factor at `step`: 1 until `start` x `steps`, then linear to 1/(decay steps + 1) at the end
    (the reference's rule with epochs read as steps)."""
    constant = int(round(start * steps))
    return 1.0 - max(0, step - constant) / float(steps - constant + 1)

