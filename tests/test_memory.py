import numpy as np
import pytest
import torch

from forceexp.core.memory import ReplayMemory
from forceexp.core.sumtree import SumTree
from forceexp.errors import CheckpointError, ConfigError
from forceexp.specs import parse_specs

SCALAR_STATE = parse_specs({"type": "float", "shape": ()}, "state")
BINARY_ACTION = parse_specs({"type": "int", "shape": (), "num_values": 2}, "action")
DICT_STATES = parse_specs(
    {"obs": {"type": "float", "shape": (3,)}, "pos": {"type": "int", "num_values": 5}}, "state"
)
DICT_ACTIONS = parse_specs(
    {"move": {"type": "int", "num_values": 3}, "push": {"type": "float", "shape": (2,)}}, "action"
)

# Two slots with discount 0.5. Slot 0 (states t): rewards 1..5, terminates at t=4, then a new
# episode starts at t=10. Slot 1 (states 100 + t): rewards 10..40, truncated at t=3, new at 110.
EPISODES = {
    **{(0, t): (t + 1.0, 1 if t == 4 else 0) for t in range(5)},
    **{(1, t): (10.0 * (t + 1), 2 if t == 3 else 0) for t in range(4)},
    (0, 10): (7.0, 0),
    (1, 10): (7.0, 0),
}
CALLS = [[(1, 0), (0, 0)], [(0, 1)], [(0, 2), (1, 1)], [(1, 2)], [(0, 3), (1, 3)], [(0, 4)]]
CALLS += [[(1, 10), (0, 10)]]
# state -> (reward, next state, discount), computed by hand
EXPECTED = {
    1: {
        **{t: (t + 1.0, t + 1.0, 0.0 if t == 4 else 0.5) for t in range(5)},
        **{100.0 + t: (10.0 * (t + 1), 101.0 + t, 0.5) for t in range(4)},
        10: (7.0, 11.0, 0.5),  # new episodes: with n=1 their first steps are complete
        110: (7.0, 111.0, 0.5),
    },
    3: {
        0: (1 + 0.5 * 2 + 0.25 * 3, 3, 0.125),
        1: (2 + 0.5 * 3 + 0.25 * 4, 4, 0.125),
        2: (3 + 0.5 * 4 + 0.25 * 5, 5, 0.0),  # flushed by the termination: no bootstrap
        3: (4 + 0.5 * 5, 5, 0.0),
        4: (5, 5, 0.0),
        100: (10 + 0.5 * 20 + 0.25 * 30, 103, 0.125),
        101: (20 + 0.5 * 30 + 0.25 * 40, 104, 0.125),  # flushed by the truncation: bootstrap
        102: (30 + 0.5 * 40, 104, 0.25),
        103: (40, 104, 0.5),
    },
}


def scalar_memory(**kwargs):
    kwargs = {"capacity": 50, "parallel": 2, "discount": 0.5, "mask_names": ("action",), **kwargs}
    return ReplayMemory(SCALAR_STATE, BINARY_ACTION, **kwargs)


def add_steps(memory, pairs, masked=True):
    """One add() call for (slot, t) pairs of EPISODES; action t % 2, mask allows [t even, True]."""
    slots = np.array([slot for slot, _ in pairs])
    times = np.array([t for _, t in pairs], dtype=np.float32)
    states = times + 100.0 * slots
    rewards = np.array([EPISODES[pair][0] for pair in pairs])
    terminals = np.array([EPISODES[pair][1] for pair in pairs])
    masks = np.stack([times % 2 == 0, np.ones(len(pairs), dtype=bool)], axis=1)
    memory.add(
        slots,
        {"state": states},
        {"action": masks} if masked else {},
        {"action": times.astype(np.int64) % 2},
        rewards,
        terminals,
        {"state": states + 1.0},
        {},
    )


def stored(memory):
    """The stored transitions as {state: (reward, next state, discount)}, via recent sampling."""
    batch = memory.sample(memory.capacity)
    return {
        float(s): (float(r), float(n), float(d))
        for s, r, n, d in zip(
            batch.states["state"],
            batch.rewards,
            batch.next_states["state"],
            batch.discounts,
            strict=True,
        )
    }


def fill(memory, count, start=0):
    """Add ``count`` one-step transitions with states start..start+count-1, one add() call."""
    states = np.arange(start, start + count, dtype=np.float32)
    ones = np.ones(count)
    actions = {"action": np.zeros(count, dtype=np.int64)}
    zeros = np.zeros(count, dtype=np.int64)
    slots = zeros if memory.n_step == 1 else np.arange(count)
    memory.add(slots, {"state": states}, {}, actions, ones, zeros, {"state": states + 1}, {})


# ---------------------------------------------------------------------------- n-step targets
@pytest.mark.parametrize("n_step", [1, 3])
def test_n_step_targets_match_hand_computed_values(n_step):
    memory = scalar_memory(n_step=n_step, sampling="recent")
    for pairs in CALLS:
        add_steps(memory, pairs)
    assert len(memory) == len(EXPECTED[n_step])
    assert stored(memory) == EXPECTED[n_step]  # every value is exact in float32
    batch = memory.sample(memory.capacity)
    states = batch.states["state"].numpy() % 100
    assert np.array_equal(batch.actions["action"].numpy(), states.astype(np.int64) % 2)
    assert np.array_equal(batch.masks["action"][:, 0].numpy(), states % 2 == 0)
    assert batch.next_masks["action"].all()  # missing masks are stored all-True


@pytest.mark.parametrize("n_step", [1, 3])
def test_absent_masks_are_all_true_and_given_masks_after_them_are_kept(n_step):
    """Absent masks share one read-only all-True array per batch size; stored rows are copies,
    so masks given later (and rows written over) never leak into it."""
    memory = scalar_memory(n_step=n_step, sampling="recent", capacity=8)
    slots = np.array([0, 1])
    for t in range(12):  # odd steps come with the mask [False, True], even steps without
        states = np.array([t, 100 + t], dtype=np.float32)
        masks = {"action": np.array([[False, True]] * 2)} if t % 2 else {}
        actions = {"action": np.array([1, 1])}
        terminals = np.array([int(t % 5 == 4), 0])
        memory.add(
            slots,
            {"state": states},
            masks,
            actions,
            np.ones(2),
            terminals,
            {"state": states + 1},
            {},
        )
    shared = memory._all_true[(2, 2)]
    assert not shared.flags.writeable and shared.all()
    batch = memory.sample(len(memory))
    odd = (batch.states["state"].numpy() % 100) % 2 == 1
    assert odd.any() and (~odd).any()
    assert not batch.masks["action"][odd, 0].numpy().any()
    assert batch.masks["action"][~odd].numpy().all() and batch.next_masks["action"].numpy().all()


def test_pending_windows_emit_nothing_until_complete_and_clear_pending_drops_them():
    memory = scalar_memory(n_step=3, sampling="recent")
    add_steps(memory, [(0, 0), (1, 0)])
    add_steps(memory, [(0, 1)])
    assert len(memory) == 0
    memory.clear_pending(np.array([0]))
    add_steps(memory, [(0, 2), (1, 1)])  # slot 0 restarts its window at t=2
    add_steps(memory, [(1, 2)])
    assert set(stored(memory)) == {100.0}
    memory.clear_pending()
    add_steps(memory, [(0, 3), (1, 3)])
    assert set(stored(memory)) == {100.0, 103.0}  # slot 0 holds only t=3 now
    add_steps(memory, [(0, 4)])
    assert set(stored(memory)) == {100.0, 103.0, 3.0, 4.0}


def test_terminal_versus_truncated_with_one_step():
    memory = scalar_memory(sampling="recent")
    add_steps(memory, [(0, 4), (1, 3), (1, 0)])  # terminated, truncated, running
    batch = memory.sample(3)
    assert batch.discounts.tolist() == [0.0, 0.5, 0.5]
    assert batch.next_states["state"].tolist() == [5.0, 104.0, 101.0]


# ---------------------------------------------------------------------------- ring buffer
def test_ring_buffer_keeps_the_newest_capacity_transitions():
    memory = scalar_memory(capacity=5, sampling="recent")
    fill(memory, 3)
    fill(memory, 2, start=3)
    fill(memory, 7, start=5)  # more rows than capacity in one call
    assert len(memory) == 5
    assert memory.sample(5).states["state"].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    fill(memory, 2, start=12)
    assert memory.sample(3).states["state"].tolist() == [11.0, 12.0, 13.0]
    assert memory.sample(99).states["state"].tolist() == [9.0, 10.0, 11.0, 12.0, 13.0]


def test_uniform_sampling_covers_every_row_and_recent_returns_fewer_when_short():
    memory = scalar_memory(capacity=10, seed=0)
    fill(memory, 10)
    batch = memory.sample(2000)
    assert set(batch.indices.tolist()) == set(range(10))
    assert np.array_equal(batch.states["state"].numpy(), batch.indices.astype(np.float32))
    assert batch.weights.dtype == torch.float32 and batch.weights.eq(1).all()
    recent = scalar_memory(sampling="recent")
    fill(recent, 3)
    assert recent.sample(8).states["state"].tolist() == [0.0, 1.0, 2.0]


def test_same_seed_same_samples():
    first, second = scalar_memory(seed=3), scalar_memory(seed=3)
    fill(first, 20)
    fill(second, 20)
    assert np.array_equal(first.sample(16).indices, second.sample(16).indices)


def test_one_draw_for_a_phase_gives_the_batches_of_one_draw_per_step():
    """Agents sample a phase's batches at once and split them with ``rows``: same stream."""
    whole, per_step = scalar_memory(seed=5), scalar_memory(seed=5)
    fill(whole, 37)
    fill(per_step, 37)
    phase = whole.sample(4 * 7)
    for i in range(4):
        batch, expected = phase.rows(7 * i, 7 * (i + 1)), per_step.sample(7)
        np.testing.assert_array_equal(batch.indices, expected.indices)
        for name in ("states", "next_states", "actions", "masks", "next_masks"):
            for key, values in getattr(expected, name).items():
                assert torch.equal(getattr(batch, name)[key], values)
        for name in ("rewards", "discounts", "weights"):
            assert torch.equal(getattr(batch, name), getattr(expected, name))


# ---------------------------------------------------------------------------- prioritized
def frequencies(memory, draws=200, batch_size=100):
    counts = np.zeros(len(memory))
    for _ in range(draws):
        np.add.at(counts, memory.sample(batch_size).indices, 1)
    return counts / counts.sum()


def test_prioritized_frequencies_follow_priorities_and_their_updates():
    memory = scalar_memory(capacity=4, sampling="prioritized", alpha=1.0, priority_epsilon=1e-9)
    fill(memory, 4)
    assert frequencies(memory) == pytest.approx([0.25] * 4, abs=0.02)  # new rows: max priority
    memory.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert frequencies(memory) == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.02)
    memory.update_priorities(np.array([0, 3]), np.array([-4.0, 1.0]))  # |TD error|
    assert frequencies(memory) == pytest.approx([0.4, 0.2, 0.3, 0.1], abs=0.02)


def test_prioritized_weights_follow_the_formula_and_beta_override():
    memory = scalar_memory(capacity=8, sampling="prioritized", alpha=0.5, beta=0.4, seed=1)
    fill(memory, 6)
    priorities = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
    memory.update_priorities(np.arange(6), priorities)
    scaled = (priorities + 1e-6) ** 0.5
    for beta in (None, 1.0):
        batch = memory.sample(32, beta=beta)
        weights = (6 * scaled[batch.indices] / scaled.sum()) ** -(beta or 0.4)
        assert batch.weights.numpy() == pytest.approx(weights / weights.max(), rel=1e-5)


def test_sum_tree_stays_consistent_after_many_updates_and_overwrites():
    rng = np.random.default_rng(0)
    memory = scalar_memory(capacity=37, sampling="prioritized", seed=0)
    for step in range(60):
        fill(memory, int(rng.integers(1, 9)), start=step)
        batch = memory.sample(16)
        memory.update_priorities(batch.indices, rng.exponential(size=16) * 10)
    tree = memory._tree
    inner = tree.nodes[1:64]  # 37 leaves pad to 64: every inner node sums its two children
    assert np.allclose(inner, tree.nodes[2:128:2] + tree.nodes[3:128:2])
    rebuilt = SumTree(37)
    rebuilt.update(slice(None), tree.priorities)
    assert np.allclose(tree.nodes, rebuilt.nodes)
    assert tree.total == pytest.approx(tree.priorities.sum())
    fill(memory, 1)  # a new row gets the largest priority given so far
    assert tree.priorities[(memory.position - 1) % 37] == memory.max_priority
    assert memory.max_priority == tree.priorities.max()


def test_update_priorities_is_ignored_without_prioritized_sampling():
    memory = scalar_memory()
    fill(memory, 4)
    memory.update_priorities(np.arange(4), np.ones(4))
    assert not memory.prioritized


# ---------------------------------------------------------------------------- components
def test_dict_states_masked_int_and_float_actions_tensor_inputs():
    memory = ReplayMemory(DICT_STATES, DICT_ACTIONS, 8, 3, mask_names=["move"], sampling="recent")
    masks = torch.tensor([[True, False, True], [False, True, False]])
    memory.add(
        np.array([2, 0]),
        {"obs": torch.arange(6.0).reshape(2, 3), "pos": torch.tensor([4, 1])},
        {"move": masks},
        {"move": np.array([2, 1]), "push": np.array([[0.5, -0.5], [1.0, 2.0]])},
        np.array([1.0, 2.0]),
        np.array([0, 1]),
        {"obs": np.ones((2, 3)), "pos": np.array([3, 2])},
        {},
    )
    batch = memory.sample(2)
    assert batch.states["obs"].dtype == torch.float32 and batch.states["pos"].dtype == torch.int64
    assert batch.states["obs"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert batch.states["pos"].tolist() == [4, 1] and batch.next_states["pos"].tolist() == [3, 2]
    assert torch.equal(batch.masks["move"], masks)
    assert batch.next_masks["move"].shape == (2, 3) and batch.next_masks["move"].all()
    assert batch.actions["move"].tolist() == [2, 1]
    assert batch.actions["push"].dtype == torch.float32
    assert batch.actions["push"].tolist() == [[0.5, -0.5], [1.0, 2.0]]
    assert batch.discounts.tolist() == pytest.approx([0.99, 0.0])
    assert set(batch.masks) == {"move"} and "push" not in batch.next_masks


def test_bytes_per_transition_and_nbytes():
    memory = ReplayMemory(DICT_STATES, DICT_ACTIONS, 10, mask_names=["move"])
    # states 2 * (3*4 + 8), actions 8 + 2*4, masks 2 * 3, rewards + discounts 8
    assert memory.bytes_per_transition == 40 + 16 + 6 + 8
    assert memory.nbytes == 10 * memory.bytes_per_transition
    prioritized = ReplayMemory(DICT_STATES, DICT_ACTIONS, 10, sampling="prioritized")
    assert prioritized.bytes_per_transition == 40 + 16 + 8 + 16
    assert prioritized.nbytes == 10 * (40 + 16 + 8) + 2 * 16 * 8  # 10 leaves pad to 16
    windows = ReplayMemory(DICT_STATES, DICT_ACTIONS, 10, 2, n_step=3)
    # per slot and step: state 20, actions 16, reward 8; plus one int64 count per slot
    assert windows.nbytes == 10 * (40 + 16 + 8) + 2 * 3 * (20 + 16 + 8) + 2 * 8


# ---------------------------------------------------------------------------- saving
def played(memory, calls=CALLS):
    for pairs in calls:
        add_steps(memory, pairs)
    return memory


def save_and_load(tmp_path, state):
    torch.save(state, tmp_path / "memory.pt")
    return torch.load(tmp_path / "memory.pt", weights_only=True)


@pytest.mark.parametrize("sampling", ["uniform", "prioritized"])
def test_state_dict_round_trip_continues_identically(tmp_path, sampling):
    original = played(scalar_memory(n_step=3, sampling=sampling, seed=5), CALLS[:3])
    original.update_priorities(np.array([0]), np.array([3.0]))
    original.sample(4)  # advance the generator
    restored = scalar_memory(n_step=3, sampling=sampling, seed=99)
    restored.load_state_dict(save_and_load(tmp_path, original.state_dict()))
    for memory in (original, restored):
        played(memory, CALLS[3:])  # pending windows finish the same way
    assert len(restored) == len(original) == len(EXPECTED[3])
    for _ in range(3):
        first, second = original.sample(16), restored.sample(16)
        assert np.array_equal(first.indices, second.indices)
        for name in ("rewards", "discounts", "weights"):
            assert torch.equal(getattr(first, name), getattr(second, name))
        assert torch.equal(first.next_states["state"], second.next_states["state"])


def test_state_dict_loads_from_npz_and_holds_only_plain_values(tmp_path):
    original = played(scalar_memory(n_step=3, sampling="prioritized", seed=2), CALLS[:4])
    state = original.state_dict()
    assert all(isinstance(v, torch.Tensor | int | float | str) for v in state.values())
    arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    np.savez(tmp_path / "memory.npz", **arrays)
    restored = scalar_memory(n_step=3, sampling="prioritized")
    with np.load(tmp_path / "memory.npz", allow_pickle=False) as data:
        restored.load_state_dict(dict(data))
    assert np.array_equal(original.sample(8).indices, restored.sample(8).indices)
    assert np.array_equal(restored._tree.nodes, original._tree.nodes)


def test_load_state_dict_rejects_mismatches_and_leaves_the_memory_intact():
    state = played(scalar_memory(n_step=3), CALLS).state_dict()
    with pytest.raises(CheckpointError, match="'capacity': 50 does not match this memory's 40"):
        scalar_memory(n_step=3, capacity=40).load_state_dict(state)
    with pytest.raises(CheckpointError, match="'n_step': 3 does not match"):
        scalar_memory(n_step=2).load_state_dict(state)
    wide = parse_specs({"type": "float", "shape": (2,)}, "state")
    other = ReplayMemory(wide, BINARY_ACTION, 50, 2, n_step=3, mask_names=("action",))
    with pytest.raises(CheckpointError, match=r"'storage/states/state': float32\[50\] does not"):
        other.load_state_dict(state)
    target = scalar_memory(n_step=3)
    with pytest.raises(CheckpointError, match="missing key 'pending/count'"):
        target.load_state_dict({k: v for k, v in state.items() if k != "pending/count"})
    with pytest.raises(CheckpointError, match="'rng': unreadable generator state"):
        target.load_state_dict({**state, "rng": "{}"})
    with pytest.raises(CheckpointError, match="position 50 / size 9 out of range"):
        target.load_state_dict({**state, "position": 50})
    assert len(target) == 0


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 0}, r"memory.capacity: 0 is invalid; expected an int >= 1"),
        ({"capacity": 2.5}, r"memory.capacity: 2.5 is invalid"),
        ({"parallel": 0}, r"memory.parallel: 0 is invalid"),
        ({"n_step": 0}, r"memory.n_step: 0 is invalid"),
        ({"discount": 1.5}, r"memory.discount: 1.5 is invalid; expected a float in \[0, 1\]"),
        ({"beta": -0.1}, r"memory.beta: -0.1 is invalid"),
        ({"alpha": -1.0}, r"memory.alpha: -1.0 is invalid; expected a float >= 0"),
        ({"priority_epsilon": 0.0}, r"memory.priority_epsilon: 0.0 is invalid"),
        ({"sampling": "uniformm"}, r"unknown sampling 'uniformm'; did you mean 'uniform'\?"),
        ({"mask_names": ("nope",)}, r"memory.mask_names: 'nope' is invalid.*\['action'\]"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        scalar_memory(**kwargs)


def test_mask_names_must_be_int_actions():
    with pytest.raises(ConfigError, match=r"'push' is invalid; expected an int action name"):
        ReplayMemory(DICT_STATES, DICT_ACTIONS, 4, mask_names=["push"])


def test_add_rejects_bad_input():
    memory = scalar_memory(n_step=2)
    good = {"state": np.zeros(2, dtype=np.float32)}
    actions, zeros = {"action": np.zeros(2, dtype=np.int64)}, np.zeros(2)

    def add(slots=(0, 1), states=good, rewards=zeros, terminals=zeros, next_states=good):
        memory.add(np.array(slots), states, {}, actions, rewards, terminals, next_states, {})

    with pytest.raises(ConfigError, match=r"memory.add.slots: \[0, 2\] is invalid; expected in"):
        add(slots=(0, 2))
    with pytest.raises(ConfigError, match=r"memory.add.slots: \[1, 1\] .* distinct slots"):
        add(slots=(1, 1))
    with pytest.raises(ConfigError, match=r"memory.add.terminals: \[0, 3\] .* 0, 1 or 2"):
        add(terminals=np.array([0, 3]))
    with pytest.raises(ConfigError, match=r"memory.add.rewards: 'shape \(3,\)' .* shape \(2,\)"):
        add(rewards=np.zeros(3))
    with pytest.raises(ConfigError, match=r"memory.add.next_states: missing 'state'; got \[\]"):
        add(next_states={})
    with pytest.raises(ConfigError, match=r"memory.add.states.state: 'shape \(2, 1\)'"):
        add(states={"state": np.zeros((2, 1))})
    assert len(memory) == 0 and not memory._windows.count.any()


def test_sample_and_update_priorities_reject_bad_input():
    memory = scalar_memory(sampling="prioritized")
    with pytest.raises(ConfigError, match=r"memory\.sample: the memory is empty"):
        memory.sample(4)
    fill(memory, 4)
    with pytest.raises(ConfigError, match=r"memory.sample.batch_size: 0 is invalid"):
        memory.sample(0)
    with pytest.raises(ConfigError, match=r"memory.sample.beta: 1.5 is invalid"):
        memory.sample(4, beta=1.5)
    with pytest.raises(ConfigError, match=r"memory.indices: \[4\] .* stored rows in \[0, 4\)"):
        memory.update_priorities(np.array([4]), np.ones(1))
    with pytest.raises(ConfigError, match=r"memory.priorities: \[nan\] .* finite values"):
        memory.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(ConfigError, match=r"memory.priorities: 'shape \(2,\)'"):
        memory.update_priorities(np.array([0]), np.ones(2))
