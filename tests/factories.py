import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from experiments.models import Experiment, ExperimentMetric, Variant
from features.models import Environment, Feature, FeatureEnvironment, FeatureRule
from metrics.models import Metric, MetricType


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests-only")


class ProductManagerFactory(UserFactory):
    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"pm{n}")
    is_staff = True

    @factory.post_generation
    def group(self, create, extracted, **kwargs):
        if create:
            self.groups.add(Group.objects.get(name="Product managers"))


class MetricFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Metric

    key = factory.Sequence(lambda n: f"metric_{n}")
    name = factory.Sequence(lambda n: f"Metric {n}")
    type = MetricType.BINOMIAL
    event = factory.Sequence(lambda n: f"event_{n}")


class ExperimentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experiment
        skip_postgeneration_save = True

    key = factory.Sequence(lambda n: f"experiment_{n}")
    name = factory.Sequence(lambda n: f"Experiment {n}")

    @factory.post_generation
    def variants(self, create, extracted, **kwargs):
        if not create:
            return
        for position, key in enumerate(extracted if extracted is not None else ["control", "treatment"]):
            Variant.objects.create(experiment=self, key=key, name=key.title(), weight=1.0, position=position)


class ExperimentMetricFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExperimentMetric

    experiment = factory.SubFactory(ExperimentFactory)
    metric = factory.SubFactory(MetricFactory)


class FeatureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feature

    key = factory.Sequence(lambda n: f"feature_{n}")
    name = factory.Sequence(lambda n: f"Feature {n}")
    default_value = False


class FeatureEnvironmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FeatureEnvironment

    feature = factory.SubFactory(FeatureFactory)
    environment = factory.LazyFunction(lambda: Environment.objects.get(key="production"))
    enabled = True


class FeatureRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FeatureRule

    feature = factory.SubFactory(FeatureFactory)
    environment = factory.LazyFunction(lambda: Environment.objects.get(key="production"))
    type = "force"
    condition = factory.LazyFunction(dict)
    value = True
