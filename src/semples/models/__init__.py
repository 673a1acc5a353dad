"""Networks: mask generators (CAM networks) for SemPLES."""
