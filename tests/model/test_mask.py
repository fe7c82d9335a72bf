"""The blockwise attention mask equals the hand-written matrix of paper §3.2."""

import torch

from a1.model.mask import ACTION, GENERATION, STATE, UNDERSTANDING, attention_mask, block_ids


def test_mask_matches_hand_written_matrix():
    # 3 understanding tokens (the last is text padding), 2 generation tokens (the second is a
    # missing view), 1 state token, 2 action tokens.
    blocks = block_ids({UNDERSTANDING: 3, GENERATION: 2, STATE: 1, ACTION: 2})
    valid = torch.tensor([[1, 1, 0, 1, 0, 1, 1, 1]], dtype=torch.bool)
    expected = torch.tensor(
        [
            # u0 u1 u2 g0 g1 s  a0 a1   (keys)
            [1, 1, 0, 0, 0, 0, 0, 0],  # u0: bidirectional inside und, pad u2 hidden
            [1, 1, 0, 0, 0, 0, 0, 0],  # u1
            [1, 1, 1, 0, 0, 0, 0, 0],  # u2 (padding query: itself kept so the row is not empty)
            [1, 1, 0, 1, 0, 0, 0, 0],  # g0: und + gen, missing g1 hidden
            [1, 1, 0, 1, 1, 0, 0, 0],  # g1 (missing-view query: itself kept)
            [1, 1, 0, 1, 0, 1, 0, 0],  # state: earlier blocks + itself, not the actions
            [1, 1, 0, 1, 0, 1, 1, 1],  # a0: state, earlier blocks, each other
            [1, 1, 0, 1, 0, 1, 1, 1],  # a1
        ],
        dtype=torch.bool,
    )
    got = attention_mask(blocks, valid)
    assert got.shape == (1, 8, 8)
    assert torch.equal(got[0], expected)


def test_causal_understanding_only_changes_the_understanding_block():
    blocks = block_ids({UNDERSTANDING: 3, GENERATION: 2, STATE: 1, ACTION: 2})
    valid = torch.ones(2, 8, dtype=torch.bool)
    bi, causal = attention_mask(blocks, valid), attention_mask(blocks, valid, causal_understanding=True)
    expected_und = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal[0, :3, :3], expected_und)
    assert bi[0, :3, :3].all()
    assert torch.equal(causal[:, 3:], bi[:, 3:])


def test_without_generation_block_actions_see_understanding():
    blocks = block_ids({UNDERSTANDING: 2, STATE: 1, ACTION: 2})
    got = attention_mask(blocks, torch.ones(1, 5, dtype=torch.bool))[0]
    assert got[2].tolist() == [True, True, True, False, False]
    assert got[4].all()
    assert not got[:2, 2:].any()
