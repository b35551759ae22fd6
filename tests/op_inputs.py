"""Random arguments for the LSTM layer op, dense or packed, with or without
bias and projection."""
import torch


def lstm_layer_args(dtype=torch.float64, *, T=4, B=3, I=2, H=3, proj=0, bias=True,
                    packed=False, requires_grad=True):
    """(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes) for lstm_layer_forward.

    Packed input uses batch sizes that shrink over time (sequence lengths
    T, T-1, 1, ... for B sequences), so continuing, finishing and (in reverse)
    starting rows all occur."""
    make = dict(dtype=dtype, requires_grad=requires_grad)
    P = proj or H
    batch_sizes = None
    if packed:
        lengths = torch.tensor(sorted([T, max(T - 1, 1)] + [1] * (B - 2), reverse=True)[:B])
        batch_sizes = torch.tensor([int((lengths > t).sum()) for t in range(T)])
        x = torch.randn(int(batch_sizes.sum()), I, **make)
    else:
        x = torch.randn(T, B, I, **make)
    return (x, torch.randn(B, P, **make), torch.randn(B, H, **make),
            torch.randn(4 * H, I, **make), torch.randn(4 * H, P, **make),
            torch.randn(4 * H, **make) if bias else None,
            torch.randn(4 * H, **make) if bias else None,
            torch.randn(P, H, **make) if proj else None,
            batch_sizes)
