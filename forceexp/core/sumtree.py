"""SumTree: a NumPy tree of priority sums with vectorised batch updates and prefix-sum search."""

from __future__ import annotations

import numpy as np


class SumTree:
    """Leaf priorities with every internal node holding the sum of its two children.

    The tree is one flat ``float64`` array of ``2 * P`` nodes, ``P`` the next power of two
    ``>= capacity``: node 1 is the root, node ``i`` has children ``2i`` and ``2i + 1``, leaf ``j``
    is node ``P + j``. Padding leaves (``j >= capacity``) stay 0. Parents are recomputed from their
    children (never adjusted by deltas), so the sums do not drift over many updates.

    Args:
        capacity: Number of leaves, >= 1.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._leaves = 1 << max(capacity - 1, 0).bit_length()  # P
        self._depth = self._leaves.bit_length() - 1  # log2(P) levels above the leaves
        self.nodes = np.zeros(2 * self._leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaf priorities."""
        return float(self.nodes[1])

    @property
    def priorities(self) -> np.ndarray:
        """Leaf priorities, shape ``(capacity,)`` (a view of the tree's storage)."""
        return self.nodes[self._leaves : self._leaves + self.capacity]

    def update(self, indices: np.ndarray | slice, values: np.ndarray | float) -> None:
        """Set leaves ``indices`` to ``values`` and recompute their ancestors.

        Args:
            indices: Leaf indices in ``[0, capacity)``, shape ``(B,)`` (repeats allowed; the last
                value wins), or a contiguous slice of leaves (updated level by level as slices).
            values: Non-negative priorities, shape ``(B,)`` or a scalar.
        """
        if isinstance(indices, slice):
            start, stop, _ = indices.indices(self.capacity)
            self._update_range(start, stop, values)
            return
        nodes = np.asarray(indices, dtype=np.int64) + self._leaves
        self.nodes[nodes] = values
        for _ in range(self._depth):
            nodes = nodes // 2  # repeated parents get the same sum, so no np.unique is needed
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def _update_range(self, start: int, stop: int, values: np.ndarray | float) -> None:
        """Set leaves ``start..stop-1``; their ancestors form one node range per level."""
        lo, hi = start + self._leaves, stop + self._leaves
        self.nodes[lo:hi] = values
        for _ in range(self._depth):
            lo, hi = lo // 2, (hi - 1) // 2 + 1
            self.nodes[lo:hi] = (
                self.nodes[2 * lo : 2 * hi : 2] + self.nodes[2 * lo + 1 : 2 * hi : 2]
            )

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaves whose cumulative-priority interval ``[c_j, c_j + p_j)`` contains each value.

        Args:
            values: Prefix sums in ``[0, total)``, shape ``(B,)``.

        Returns:
            Leaf indices, shape ``(B,)`` int64. A value at or past ``total`` (rounding) lands on
            the last leaf with a non-zero path, which callers clamp to their filled range.
        """
        values = np.array(values, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = self.nodes[left]
            go_right = values >= left_sum
            values -= np.where(go_right, left_sum, 0.0)
            nodes = left + go_right
        return nodes - self._leaves
