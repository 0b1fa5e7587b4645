"""The decode engine with its cache and stop strings, the group and tree samplers, the env protocol, the evaluation generate helper and the response-layout reader. Imports run/, data/, models/."""
