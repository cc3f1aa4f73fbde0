"""Hyperparameter search over kerasrl agents with keras-tuner (imported as `kerasrl.tuning`).

The tuner and the agents' hypermodels are the subject of the tuning issue; this
package holds their place in the layout the project was designed with.
"""
