"""ECG scorer tools for people: the analysts' query CLI (`ecg-scorer`) and the local stack."""
