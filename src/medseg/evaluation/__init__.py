"""medseg.evaluation"""
