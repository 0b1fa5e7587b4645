"""The research-use notice every medical output of medrl carries: the app's answers, the demo, DermIQ's conversations
and exported model cards. It lives with the medical packages (here, the one they all import); the domain-free core
receives it (`training.card_notice`), registered by the app package that assembles the `medrl` command."""

DISCLAIMER = (
    "For research use only. Not a medical device; outputs are not medical advice and must not be "
    "used for diagnosis or treatment decisions."
)

INTENDED_USE = (
    "Research on medical reasoning post-training and its inspection by clinicians. Not validated for any "
    "clinical use; outputs can be wrong, incomplete or biased (training data, skin tones, populations)."
)
